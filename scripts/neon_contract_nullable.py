#!/usr/bin/env python3
"""Writes Neon's OpenAPI 3.0 contract with every optional property nullable.

Neon's own document lacks `nullable` on fields that Neon itself sends as
null (`last_active`, `error`, ...), so a conforming server fails it on
every null. This treats a null as an absent field, as Neon's client does
(serde `Option`): each property that is not `required` gets
`nullable: true`. Nothing else changes.

usage: neon_contract_nullable.py IN.yaml OUT.yaml
"""
import sys

import yaml


def relax(node):
    if isinstance(node, dict):
        responses = node.get("responses")
        if isinstance(responses, dict):
            # YAML reads `200:` as an integer; OpenAPI keys are strings.
            node["responses"] = {str(k): v for k, v in responses.items()}
        props = node.get("properties")
        if isinstance(props, dict):
            required = set(node.get("required") or [])
            for name, schema in props.items():
                if name not in required and isinstance(schema, dict) and "$ref" not in schema:
                    schema["nullable"] = True
        for value in node.values():
            relax(value)
    elif isinstance(node, list):
        for value in node:
            relax(value)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        doc = yaml.safe_load(f)
    relax(doc)
    with open(dst, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)


if __name__ == "__main__":
    main()
