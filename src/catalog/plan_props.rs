//! Property tests of the planner: random snapshots, specs and delta ops.
//!
//! - every plan applies to the snapshot model without an error Postgres
//!   would raise, and the result is what the spec asks for;
//! - planning again from the result is empty (a second apply executes no
//!   statement);
//! - renames and deletes compose as a naive set model of the deltas says;
//! - roles and databases the spec and deltas do not name are untouched.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::model::Model;
use super::ops::{DbOption, Secret};
use super::plan::{PlanError, database_options, plan, stored_password};
use super::snapshot::{DatabaseInfo, MemberGrant, RoleInfo, Snapshot};
use crate::spec::role_options::{RoleAttrs, parse_role_options};
use crate::spec::{Cluster, ComputeSpec, Database, DeltaAction, DeltaOp, GenericOption, Role};

const SUPERUSER: &str = "cloud_admin";
const OWN_DB: &str = "postgres";
/// A small pool so that names collide often; includes case-only
/// differences, quotes and a reserved word.
const NAMES: &[&str] = &["a", "A", "b", "c\"q", "select", "d e", "ü"];

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(NAMES).prop_map(str::to_string)
}

fn spec_password() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("5B1D16B78004BBD51FA06AF9EDA75972".to_string())),
        Just(Some("5b1d16b78004bbd51fa06af9eda75972".to_string())),
        Just(Some(
            "SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2VydmVy".to_string()
        )),
    ]
}

fn stored() -> impl Strategy<Value = Option<Secret>> {
    spec_password().prop_map(|p| stored_password(p.as_deref()))
}

/// Role attributes as drift may have left them.
fn attrs() -> impl Strategy<Value = RoleAttrs> {
    (
        prop::array::uniform6(prop::bool::weighted(0.3)),
        prop::sample::select(vec![-1, -1, 2]),
        prop::sample::select(vec![None, Some("2030-01-01T00:00:00Z".to_string())]),
    )
        .prop_map(|(f, connection_limit, valid_until)| RoleAttrs {
            login: !f[0],
            createdb: f[1],
            createrole: f[2],
            replication: f[3],
            bypassrls: f[4],
            inherit: !f[5],
            connection_limit,
            valid_until,
        })
}

/// Options a spec role may carry (name, value), as Neon sends them.
fn role_options() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let one = prop_oneof![
        any::<bool>().prop_map(|b| ("createdb", b.to_string())),
        any::<bool>().prop_map(|b| ("createrole", b.to_string())),
        any::<bool>().prop_map(|b| ("replication", b.to_string())),
        any::<bool>().prop_map(|b| ("bypassrls", b.to_string())),
        any::<bool>().prop_map(|b| ("inherit", b.to_string())),
        prop::sample::select(vec!["-1", "0", "7"])
            .prop_map(|n| ("connection_limit", n.to_string())),
        prop::sample::select(vec!["infinity", "2030-01-01", "2031-05-06T07:08:09Z"])
            .prop_map(|t| ("valid_until", t.to_string())),
    ];
    prop::collection::vec(one, 0..4)
}

prop_compose! {
    fn snapshot()(
        roles in prop::collection::btree_map(name(), (stored(), attrs(), prop::collection::btree_set(name(), 0..3), any::<bool>()), 0..5),
        dbs in prop::collection::btree_map(name(), (0..8usize, any::<bool>(), any::<bool>(), prop::bool::weighted(0.8), prop::sample::select(vec![-1, 3])), 0..5),
    ) -> Snapshot {
        let mut role_infos = vec![RoleInfo { name: SUPERUSER.into(), password: None, superuser: true, builtin: true, attrs: RoleAttrs::default(), member_of: vec![], member_grants: vec![] }];
        let owners: Vec<String> = std::iter::once(SUPERUSER.to_string()).chain(roles.keys().cloned()).collect();
        let names: BTreeSet<String> = roles.keys().cloned().collect();
        // Memberships between existing roles, without loops (only in roles
        // that sort after the member).
        // Each granted by the superuser and, as 16+ keeps one grant per
        // grantor, sometimes also by another role.
        let other_grantor = names.iter().next().cloned();
        role_infos.extend(roles.into_iter().map(|(name, (password, attrs, groups, two_grantors))| {
            let member_of: Vec<String> = groups.into_iter().filter(|g| names.contains(g) && *g > name).collect();
            let mut member_grants = Vec::new();
            for g in &member_of {
                member_grants.push(MemberGrant { role: g.clone(), grantor: SUPERUSER.into() });
                if let Some(o) = other_grantor.as_ref().filter(|_| two_grantors) {
                    member_grants.push(MemberGrant { role: g.clone(), grantor: o.clone() });
                }
            }
            RoleInfo { name, password, superuser: false, builtin: false, attrs, member_of, member_grants }
        }));
        let mut databases = vec![DatabaseInfo { name: OWN_DB.into(), owner: SUPERUSER.into(), allow_connections: true, is_template: false, valid: true, connection_limit: -1, extensions_marker: None }];
        databases.extend(dbs.into_iter().map(|(name, (o, allow, template, valid, connection_limit))| DatabaseInfo {
            // An invalid template cannot come from an interrupted DROP
            // DATABASE (templates cannot be dropped).
            name, owner: owners[o % owners.len()].clone(), allow_connections: allow, is_template: template && valid, valid,
            connection_limit: if valid { connection_limit } else { -2 }, extensions_marker: None,
        }));
        Snapshot { roles: role_infos, databases, max_connections: 100, current_user: SUPERUSER.into() }
    }
}

/// Options a spec database may carry, and `restrict_conn`.
fn db_options() -> impl Strategy<Value = (Vec<GenericOption>, Option<bool>)> {
    let one = prop_oneof![
        any::<bool>().prop_map(|b| ("ALLOW_CONNECTIONS", b.to_string())),
        any::<bool>().prop_map(|b| ("IS_TEMPLATE", b.to_string())),
        prop::sample::select(vec!["-1", "5"]).prop_map(|n| ("CONNECTION_LIMIT", n.to_string())),
    ];
    (
        prop::collection::vec(one, 0..3),
        prop::option::weighted(0.3, any::<bool>()),
    )
        .prop_map(|(opts, restrict)| {
            let opts = opts
                .into_iter()
                .map(|(name, value)| GenericOption {
                    name: name.into(),
                    value: Some(value),
                    vartype: "string".into(),
                })
                .collect();
            (opts, restrict)
        })
}

fn delta() -> impl Strategy<Value = DeltaOp> {
    (0..4u8, name(), name()).prop_map(|(a, name, new_name)| {
        let action = [
            DeltaAction::DeleteDb,
            DeltaAction::RenameDb,
            DeltaAction::DeleteRole,
            DeltaAction::RenameRole,
        ][a as usize];
        DeltaOp {
            action,
            name,
            new_name: Some(new_name),
        }
    })
}

prop_compose! {
    fn spec()(
        roles in prop::collection::btree_map(name(), (spec_password(), role_options(), prop::option::weighted(0.4, prop::collection::vec(0..8usize, 0..3))), 0..5),
        dbs in prop::collection::btree_map(name(), (0..8usize, db_options()), 0..5),
        deltas in prop::collection::vec(delta(), 0..5),
    ) -> ComputeSpec {
        let owners: Vec<String> = std::iter::once(SUPERUSER.to_string()).chain(roles.keys().cloned()).collect();
        let databases = dbs.iter().map(|(name, (o, (options, restrict_conn)))| Database {
            name: name.clone(), owner: owners[o % owners.len()].clone(), options: Some(options.clone()), extensions: vec![],
            restrict_conn: *restrict_conn,
        }).collect();
        // in_role names spec roles (they exist once created) and, rarely,
        // the superuser (refused).
        let roles = roles.into_iter().map(|(name, (encrypted_password, opts, in_role))| {
            let mut options: Vec<GenericOption> = opts.into_iter().map(|(n, v)| GenericOption { name: n.into(), value: Some(v), vartype: "string".into() }).collect();
            if let Some(groups) = in_role {
                let list: Vec<String> = groups.iter().map(|i| owners[i % owners.len()].clone()).collect();
                options.push(GenericOption { name: "in_role".into(), value: Some(list.join(",")), vartype: "string".into() });
            }
            Role { name, encrypted_password, options: Some(options) }
        }).collect();
        let mut spec: ComputeSpec = serde_json::from_str(r#"{"format_version": 1.0, "cluster": {}}"#).unwrap();
        spec.cluster = Cluster { roles, databases, ..spec.cluster };
        spec.delta_operations = Some(deltas);
        spec
    }
}

/// The naive set model of the deltas: which names exist afterwards.
fn naive_names(snapshot: &Snapshot, spec: &ComputeSpec) -> (BTreeSet<String>, BTreeSet<String>) {
    let protected = |r: &str| r == SUPERUSER;
    let mut roles: BTreeSet<String> = snapshot.roles.iter().map(|r| r.name.clone()).collect();
    // Invalid databases are dropped first.
    let mut dbs: BTreeMap<String, bool> = snapshot
        .databases
        .iter()
        .filter(|d| d.valid)
        .map(|d| (d.name.clone(), d.valid))
        .collect();
    for d in spec.delta_ops() {
        let new = d.new_name.clone().unwrap_or_default();
        match d.action {
            DeltaAction::DeleteRole if !protected(&d.name) => {
                roles.remove(&d.name);
            }
            DeltaAction::RenameRole
                if !protected(&d.name) && roles.contains(&d.name) && !roles.contains(&new) =>
            {
                roles.remove(&d.name);
                roles.insert(new);
            }
            DeltaAction::DeleteDb => {
                dbs.remove(&d.name);
            }
            DeltaAction::RenameDb if dbs.get(&d.name) == Some(&true) && !dbs.contains_key(&new) => {
                dbs.remove(&d.name);
                dbs.insert(new, true);
            }
            _ => {}
        }
    }
    roles.extend(spec.cluster.roles.iter().map(|r| r.name.clone()));
    let mut dbs: BTreeSet<String> = dbs.into_keys().collect();
    dbs.extend(spec.cluster.databases.iter().map(|d| d.name.clone()));
    (roles, dbs)
}

/// Whether no name appears in more than one delta of the same kind.
fn unchained(spec: &ComputeSpec) -> bool {
    let mut roles = BTreeSet::new();
    let mut dbs = BTreeSet::new();
    spec.delta_ops().iter().all(|d| {
        let set = match d.action {
            DeltaAction::DeleteRole | DeltaAction::RenameRole => &mut roles,
            DeltaAction::DeleteDb | DeltaAction::RenameDb => &mut dbs,
        };
        let rename = matches!(d.action, DeltaAction::RenameRole | DeltaAction::RenameDb);
        let new_ok = !rename || set.insert(d.new_name.clone().unwrap_or_default());
        set.insert(d.name.clone()) && new_ok
    })
}

fn touched_by_deltas(spec: &ComputeSpec) -> BTreeSet<String> {
    spec.delta_ops()
        .iter()
        .flat_map(|d| [d.name.clone(), d.new_name.clone().unwrap_or_default()])
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn plan_reaches_the_spec_and_converges(snapshot in snapshot(), spec in spec()) {
        // Deltas of the supervisor's own database are refused by design.
        prop_assume!(spec.delta_ops().iter().all(|d| d.name != OWN_DB
            || matches!(d.action, DeltaAction::DeleteRole | DeltaAction::RenameRole)));
        let contradiction = spec.delta_ops().iter().any(|d| match d.action {
            DeltaAction::DeleteRole | DeltaAction::RenameRole => spec.cluster.roles.iter().any(|r| r.name == d.name),
            DeltaAction::DeleteDb | DeltaAction::RenameDb => spec.cluster.databases.iter().any(|x| x.name == d.name),
        });
        let planned = plan(&snapshot, &spec, OWN_DB);
        if contradiction {
            prop_assert!(matches!(planned, Err(PlanError::Contradiction { .. })), "{:?}", planned);
            return Ok(());
        }
        let refused_membership = spec.cluster.roles.iter().any(|r| {
            parse_role_options(r.options.as_deref().unwrap_or(&[])).unwrap().in_role.is_some_and(|g| g.iter().any(|g| g == SUPERUSER))
        });
        let conflict = spec.cluster.databases.iter().any(|d| database_options(d).is_err());
        let ops = match planned {
            // Spec mistakes the planner must refuse (validation cannot see
            // loops through existing memberships).
            Err(PlanError::SuperuserMembership { .. }) if refused_membership => return Ok(()),
            Err(PlanError::RestrictConnConflict { .. } | PlanError::DuplicateDbOption { .. }) if conflict => return Ok(()),
            Err(PlanError::MembershipLoop { .. }) => return Ok(()),
            other => {
                prop_assert!(!refused_membership && !conflict, "{:?}", other);
                other.map_err(|e| TestCaseError::fail(format!("plan: {e}")))?
            }
        };
        let mut model = Model::from_snapshot(&snapshot);
        for op in &ops {
            model.apply(op).map_err(|e| TestCaseError::fail(format!("{op}: {e}")))?;
        }
        for r in &spec.cluster.roles {
            if r.name == SUPERUSER { continue; }
            let got = model.roles.get(&r.name).expect("spec role exists");
            prop_assert_eq!(&got.password, &stored_password(r.encrypted_password.as_deref()));
            let wish = parse_role_options(r.options.as_deref().unwrap_or(&[])).unwrap();
            prop_assert_eq!(&got.attrs, &wish.attrs, "attributes of {}", &r.name);
            if let Some(groups) = wish.in_role {
                prop_assert_eq!(&got.member_of, &groups.into_iter().collect::<BTreeSet<_>>(), "memberships of {}", &r.name);
            }
        }
        for d in &spec.cluster.databases {
            let got = model.databases.get(&d.name).expect("spec database exists");
            prop_assert!(got.valid);
            prop_assert_eq!(&got.owner, &d.owner);
            for o in database_options(d).unwrap() {
                match o {
                    DbOption::AllowConnections(b) => prop_assert_eq!(got.allow_connections, b),
                    DbOption::IsTemplate(b) => prop_assert_eq!(got.is_template, b),
                    DbOption::ConnectionLimit(n) => prop_assert_eq!(got.connection_limit, n),
                    _ => {}
                }
            }
        }
        prop_assert!(model.databases.values().all(|d| d.valid), "invalid databases are dropped");
        let (roles, dbs) = naive_names(&snapshot, &spec);
        prop_assert_eq!(model.roles.keys().cloned().collect::<BTreeSet<_>>(), roles);
        prop_assert_eq!(model.databases.keys().cloned().collect::<BTreeSet<_>>(), dbs);

        let named = touched_by_deltas(&spec);
        for r in &snapshot.roles {
            let in_spec = spec.cluster.roles.iter().any(|s| s.name == r.name);
            if !in_spec && !named.contains(&r.name) {
                prop_assert_eq!(&model.roles[&r.name].password, &r.password, "role {} untouched", &r.name);
            }
        }

        // Deltas replay on every apply (they stay in the spec); a chain such
        // as `rename x -> y, delete y` is a fixed point only when it applied
        // fully, so convergence is asserted for unchained deltas and for
        // chains whose every step applied (see the unit test below).
        let again = plan(&model.to_snapshot(), &spec, OWN_DB).expect("second plan");
        if unchained(&spec) {
            prop_assert!(again.is_empty(), "second plan not empty: {:?}", again);
        }
    }

    #[test]
    fn protected_roles_are_never_touched(snapshot in snapshot(), spec in spec()) {
        let Ok(ops) = plan(&snapshot, &spec, OWN_DB) else { return Ok(()) };
        for op in &ops {
            let s = format!("{op:?}");
            prop_assert!(!s.contains(&format!("name: \"{SUPERUSER}\"")), "{}", s);
            prop_assert!(!s.contains(&format!("from: \"{SUPERUSER}\"")), "{}", s);
            prop_assert!(!s.contains(&format!("role: \"{SUPERUSER}\"")), "{}", s);
        }
    }
}

#[test]
fn rename_then_delete_composes_and_md5_is_set_again() {
    let snapshot = Snapshot {
        roles: vec![
            RoleInfo {
                name: SUPERUSER.into(),
                password: None,
                superuser: true,
                builtin: true,
                attrs: RoleAttrs::default(),
                member_of: vec![],
                member_grants: vec![],
            },
            RoleInfo {
                name: "old".into(),
                password: Some(Secret::new("md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")),
                superuser: false,
                builtin: false,
                attrs: RoleAttrs::default(),
                member_of: vec![],
                member_grants: vec![],
            },
        ],
        databases: vec![DatabaseInfo {
            name: OWN_DB.into(),
            owner: SUPERUSER.into(),
            allow_connections: true,
            is_template: false,
            valid: true,
            connection_limit: -1,
            extensions_marker: None,
        }],
        max_connections: 100,
        current_user: SUPERUSER.into(),
    };
    let mut spec: ComputeSpec = serde_json::from_str(
        r#"{"format_version": 1.0, "cluster": {"roles": [{"name": "new", "encrypted_password": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}]},
            "delta_operations": [{"action": "rename_role", "name": "old", "new_name": "new"}]}"#,
    )
    .unwrap();
    let ops = plan(&snapshot, &spec, OWN_DB).unwrap();
    let rendered: Vec<String> = ops.iter().map(super::render::render).collect();
    assert_eq!(
        rendered,
        [
            r#"ALTER ROLE "old" RENAME TO "new""#,
            r#"ALTER ROLE "new" WITH PASSWORD 'md5bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'"#
        ]
    );
    spec.delta_operations
        .as_mut()
        .unwrap()
        .push(serde_json::from_str(r#"{"action": "delete_role", "name": "new"}"#).unwrap());
    spec.cluster.roles.clear();
    let ops = plan(&snapshot, &spec, OWN_DB).unwrap();
    let kinds: Vec<&str> = ops.iter().map(|o| o.kind()).collect();
    assert_eq!(
        kinds,
        ["rename_role", "reassign_owned", "drop_owned", "drop_role"]
    );
}
