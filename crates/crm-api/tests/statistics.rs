//! `crm_rows` is analysed as soon as it has grown enough that its statistics mislead the planner: on a fresh database
//! once it has a few pages of rows, then whenever it has doubled.

use crm_api::statistics::{analyze_if_grown, Analysis, MIN_PAGES};
use service_common::db::KEY_LOOKUP_PLANS;
use sqlx::{PgConnection, PgPool};
use test_support::TestDb;
use uuid::Uuid;

/// Adds `n` leads to `ws`.
async fn add_leads(conn: &mut PgConnection, ws: Uuid, n: i64) {
    sqlx::query(
        "INSERT INTO crm_rows (id, workspace_id, email)
         SELECT gen_random_uuid(), $1, 'lead-' || gen_random_uuid() || '@example.com' FROM generate_series(1, $2)",
    )
    .bind(ws)
    .bind(n)
    .execute(&mut *conn)
    .await
    .unwrap();
}

/// The table's size in pages now, and at its last statistics.
async fn pages(pool: &PgPool) -> (i64, i32) {
    crm_api::statistics::pages(pool).await.unwrap()
}

/// A migrated database with one workspace, whose `crm_rows` only these tests analyse: autovacuum's analyses would
/// record the table's size that [`analyze_if_grown`] compares with.
async fn database() -> (TestDb, PgPool, Uuid) {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    crm_db::migrate(&pool).await.expect("migrations");
    let ws = Uuid::now_v7();
    sqlx::query("INSERT INTO workspaces (id, name) VALUES ($1, 'w')").bind(ws).execute(&pool).await.unwrap();
    sqlx::query("ALTER TABLE crm_rows SET (autovacuum_enabled = false)").execute(&pool).await.unwrap();
    (db, pool, ws)
}

/// How the writers' email lookup reads `crm_rows` (with their pool's planner settings).
async fn email_lookup_index(pool: &PgPool, ws: Uuid) -> String {
    let mut tx = pool.begin().await.unwrap();
    for (setting, value) in KEY_LOOKUP_PLANS {
        sqlx::query(&format!("SET LOCAL {setting} = {value}")).execute(&mut *tx).await.unwrap();
    }
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT r.id FROM unnest($1::uuid[], $2::text[]) AS t(ws, e)
           JOIN crm_rows r ON r.workspace_id = t.ws AND lower(r.email) = lower(t.e)",
    )
    .bind(vec![ws; 50])
    .bind((0..50).map(|i| format!("lead-{i}@example.com")).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    plan.join("\n")
}

#[tokio::test]
async fn crm_rows_is_analysed_when_it_has_grown_past_its_statistics() {
    let (_db, pool, ws) = database().await;
    let mut writer = pool.acquire().await.unwrap();
    let analysed = || async {
        sqlx::query_scalar::<_, i64>("SELECT analyze_count FROM pg_stat_user_tables WHERE relid = 'crm_rows'::regclass")
            .fetch_one(&pool)
            .await
            .unwrap()
    };

    add_leads(&mut writer, ws, 10).await;
    assert!(pages(&pool).await.0 < MIN_PAGES);
    assert_eq!(analyze_if_grown(&pool).await.unwrap(), Analysis::NotNeeded, "fewer than {MIN_PAGES} pages");
    assert_eq!(analysed().await, 0);

    add_leads(&mut writer, ws, 2000).await;
    assert!(pages(&pool).await.0 >= MIN_PAGES);
    assert_eq!(analyze_if_grown(&pool).await.unwrap(), Analysis::Done, "a new table of {MIN_PAGES} pages or more");
    assert_eq!(analysed().await, 1);
    let (now, then) = pages(&pool).await;
    assert_eq!(now, i64::from(then), "the statistics know the table's size");
    let plan = email_lookup_index(&pool, ws).await;
    assert!(plan.contains("crm_rows_workspace_email_key"), "with statistics the lookup takes the email index:\n{plan}");

    // Half as many rows again is not yet a doubling; twice as many again is.
    add_leads(&mut writer, ws, 1000).await;
    assert_eq!(analyze_if_grown(&pool).await.unwrap(), Analysis::NotNeeded, "not doubled: {:?}", pages(&pool).await);
    add_leads(&mut writer, ws, 3000).await;
    assert_eq!(analyze_if_grown(&pool).await.unwrap(), Analysis::Done, "doubled: {:?}", pages(&pool).await);
    assert_eq!(analysed().await, 2);
}

#[tokio::test]
async fn a_role_that_does_not_own_crm_rows_is_told_so_rather_than_analysing_in_vain() {
    let (db, pool, ws) = database().await;
    add_leads(&mut pool.acquire().await.unwrap(), ws, 2000).await;
    // A role of its own (roles belong to the whole server), allowed to read the table but not to analyse it.
    let role = format!("crm_reader_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE ROLE {role} LOGIN")).execute(&pool).await.unwrap();
    sqlx::query(&format!("GRANT SELECT ON crm_rows TO {role}")).execute(&pool).await.unwrap();
    let (_, rest) = db.url.split_once("://").unwrap();
    let (_, host_and_db) = rest.split_once('@').unwrap();
    let reader = PgPool::connect(&format!("postgres://{role}@{host_and_db}")).await.unwrap();

    let outcome = analyze_if_grown(&reader).await;
    reader.close().await;
    sqlx::query(&format!("REVOKE SELECT ON crm_rows FROM {role}")).execute(&pool).await.unwrap();
    sqlx::query(&format!("DROP ROLE {role}")).execute(&pool).await.unwrap();
    assert_eq!(outcome.unwrap(), Analysis::NotPermitted);
}
