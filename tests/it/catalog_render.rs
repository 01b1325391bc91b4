//! The renderer against a real Postgres: random valid names (quotes,
//! backslashes, `$$`, newlines, emoji, 63-byte names, reserved words,
//! case-only differences) are created, read back byte-equal through the
//! snapshot query, renamed and dropped with exactly the SQL `render` emits.

use crate::support::postgres::{TestPostgres, snapshot};
use compute_ctl::catalog::{DbOption, Op, RoleAttr, Secret, render};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Characters chosen to break naive quoting, plus ordinary ones.
const ALPHABET: &[&str] = &[
    "a", "Z", "_", " ", "\"", "'", "\\", "$$", "$", "\n", "\t", ";", "--", "/*", "é", "🐘",
    "SELECT", "drop", "1",
];

/// A non-empty name of at most 63 bytes (longer ones are cut at a char
/// boundary, which also yields exactly-63-byte names).
fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(ALPHABET), 1..40).prop_map(|parts| {
        let mut s = String::new();
        for p in parts {
            for c in p.chars() {
                if s.len() + c.len_utf8() > 63 {
                    return s;
                }
                s.push(c);
            }
        }
        s
    })
}

async fn run(client: &tokio_postgres::Client, op: &Op) -> Result<(), TestCaseError> {
    client
        .batch_execute(&render(op))
        .await
        .map_err(|e| TestCaseError::fail(format!("{}: {e:?}", render(op))))
}

async fn round_trip(
    client: &tokio_postgres::Client,
    role: &str,
    db: &str,
    renamed: &str,
) -> Result<(), TestCaseError> {
    let password = Some(Secret::new("md5a1b2c3d4e5f60718293a4b5c6d7e8f90"));
    run(
        client,
        &Op::CreateRole {
            name: role.into(),
            password: password.clone(),
            attrs: vec![RoleAttr::CreateDb(true), RoleAttr::ConnectionLimit(3)],
        },
    )
    .await?;
    let group = "group \"g\" 'ü'";
    run(
        client,
        &Op::CreateRole {
            name: group.into(),
            password: None,
            attrs: vec![],
        },
    )
    .await?;
    run(
        client,
        &Op::GrantRole {
            role: group.into(),
            member: role.into(),
        },
    )
    .await?;
    run(
        client,
        &Op::AlterRoleAttributes {
            name: role.into(),
            attrs: vec![
                RoleAttr::Inherit(false),
                RoleAttr::ValidUntil(Some("2040-01-01T00:00:00Z".into())),
            ],
        },
    )
    .await?;
    run(
        client,
        &Op::CreateDatabase {
            name: db.into(),
            owner: role.into(),
            options: vec![
                DbOption::Template("template0".into()),
                DbOption::Encoding("UTF8".into()),
                DbOption::LcCollate("C".into()),
            ],
        },
    )
    .await?;
    let snap = snapshot(client).await;
    let got = snap.roles.iter().find(|r| r.name == role);
    prop_assert_eq!(
        got.and_then(|r| r.password.clone()),
        password,
        "role {:?}",
        role
    );
    let got = snap.roles.iter().find(|r| r.name == role);
    prop_assert_eq!(
        got.map(|r| (r.attrs.createdb, r.attrs.inherit, r.attrs.connection_limit)),
        Some((true, false, 3))
    );
    prop_assert_eq!(
        got.and_then(|r| r.attrs.valid_until.as_deref()),
        Some("2040-01-01T00:00:00Z")
    );
    prop_assert_eq!(
        got.map(|r| r.member_of.clone()),
        Some(vec![group.to_string()])
    );
    let got = snap.databases.iter().find(|d| d.name == db);
    prop_assert_eq!(
        got.map(|d| d.owner.as_str()),
        Some(role),
        "database {:?}",
        db
    );
    run(
        client,
        &Op::AlterDatabaseOptions {
            name: db.into(),
            options: vec![
                DbOption::ConnectionLimit(4),
                DbOption::AllowConnections(false),
            ],
        },
    )
    .await?;
    let marker = format!("[\"{role}\"]");
    run(
        client,
        &Op::SetExtensionsMarker {
            database: db.into(),
            value: marker.clone(),
        },
    )
    .await?;
    let snap = snapshot(client).await;
    let got = snap.databases.iter().find(|d| d.name == db);
    prop_assert_eq!(
        got.map(|d| (d.connection_limit, d.allow_connections)),
        Some((4, false))
    );
    prop_assert_eq!(got.and_then(|d| d.extensions_marker.clone()), Some(marker));
    run(
        client,
        &Op::RevokeRole {
            role: group.into(),
            member: role.into(),
            granted_by: None,
        },
    )
    .await?;
    run(client, &Op::DropRole { name: group.into() }).await?;

    if renamed != role {
        run(
            client,
            &Op::RenameRole {
                from: role.into(),
                to: renamed.into(),
            },
        )
        .await?;
        let snap = snapshot(client).await;
        prop_assert!(
            snap.roles.iter().any(|r| r.name == renamed),
            "renamed {:?}",
            renamed
        );
        prop_assert!(!snap.roles.iter().any(|r| r.name == role));
    }
    run(client, &Op::DropDatabase { name: db.into() }).await?;
    run(
        client,
        &Op::DropRole {
            name: renamed.into(),
        },
    )
    .await?;
    let snap = snapshot(client).await;
    prop_assert!(
        !snap
            .roles
            .iter()
            .any(|r| r.name == renamed || r.name == role)
    );
    prop_assert!(!snap.databases.iter().any(|d| d.name == db));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_names_round_trip_through_postgres() {
    let pg = TestPostgres::start(&[]).await;
    let client = pg.client("postgres").await;
    // Fixed hostile cases first: case-only differences, reserved words,
    // 63-byte multibyte names, the Neon fixture's injection attempt.
    let fixed = [
        ("select", "Select", "SELECT"),
        ("\"name\";\\n select 1;", "DB\"2", "x$$y"),
        (
            &"🐘".repeat(15)[..],
            &"é".repeat(31)[..],
            &format!("{}a", "é".repeat(31))[..],
        ),
        ("a\nb", "'; DROP TABLE x; --", "a\\b"),
    ];
    for (role, db, renamed) in fixed {
        round_trip(&client, role, db, renamed)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    let handle = tokio::runtime::Handle::current();
    let result = runner.run(&(name(), name(), name()), |(role, db, renamed)| {
        tokio::task::block_in_place(|| handle.block_on(round_trip(&client, &role, &db, &renamed)))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
