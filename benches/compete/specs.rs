//! Specs of a given catalog size.

use serde_json::{Value, json};

/// md5 verifier as Neon sends it (hex of md5(password || role), no prefix).
pub fn md5_hex(password: &str, role: &str) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(format!("{password}{role}").as_bytes()))
}

/// The name of role `i` of [`sized`] specs.
pub fn role_name(i: usize) -> String {
    format!("role_{i:05}")
}

/// The name of database `i` of [`sized`] specs.
pub fn db_name(i: usize) -> String {
    format!("db_{i:04}")
}

/// The password of role `i` in generation `pw_gen` of [`sized`] specs.
pub fn password(i: usize, pw_gen: u32) -> String {
    format!("pw{i}-{pw_gen}")
}

/// A spec with `roles` roles and `dbs` databases; `pw_gen` varies passwords.
pub fn sized(roles: usize, dbs: usize, pw_gen: u32, op: &str) -> Value {
    let roles_json: Vec<Value> = (0..roles)
        .map(|i| {
            let name = role_name(i);
            json!({"name": name, "encrypted_password": md5_hex(&password(i, pw_gen), &name)})
        })
        .collect();
    let dbs_json: Vec<Value> = (0..dbs)
        .map(|i| json!({"name": db_name(i), "owner": role_name(i % roles.max(1))}))
        .collect();
    json!({
        "format_version": 1.0,
        "operation_uuid": op,
        "cluster": {
            "roles": roles_json,
            "databases": dbs_json,
            "settings": [
                {"name": "max_connections", "value": "200", "vartype": "integer"},
                {"name": "shared_buffers", "value": "128MB", "vartype": "string"},
                {"name": "fsync", "value": "off", "vartype": "bool"},
                {"name": "work_mem", "value": "4MB", "vartype": "string"}
            ]
        }
    })
}

/// `spec` turned into a notify: skip flag, new storage address, `work_mem` changed.
pub fn notify(spec: &Value, op: &str, work_mem: &str) -> Value {
    let mut s = spec.clone();
    s["operation_uuid"] = json!(op);
    s["skip_pg_catalog_updates"] = json!(true);
    s["pageserver_connstring"] = json!(format!("host=127.0.0.1 port=64{}", op.len() % 100));
    set_work_mem(&mut s, work_mem);
    s
}

pub fn set_work_mem(spec: &mut Value, work_mem: &str) {
    if let Some(settings) = spec["cluster"]["settings"].as_array_mut() {
        for s in settings {
            if s["name"] == "work_mem" {
                s["value"] = json!(work_mem);
            }
        }
    }
}
