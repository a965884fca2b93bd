//! A running crm-api analyses `crm_rows` on its own once a brand-new table has grown (`crm_api::statistics`), well
//! before autovacuum's first look at it.

use crm_tests::{eventually, TestApp};
use std::time::Duration;

#[tokio::test]
async fn crm_api_analyses_a_new_crm_rows_table_once_it_has_rows() {
    let app = TestApp::spawn().await;
    let (ws, _token) = app.workspace_with_token("editor").await;
    // Only crm-api may analyse it here (autovacuum's analyses are counted apart, but would set the size it compares
    // with).
    sqlx::query("ALTER TABLE crm_rows SET (autovacuum_enabled = false)").execute(&app.pool).await.unwrap();
    let analysed = || async {
        sqlx::query_scalar::<_, i64>("SELECT analyze_count FROM pg_stat_user_tables WHERE relid = 'crm_rows'::regclass")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    assert_eq!(analysed().await, 0);

    sqlx::query(
        "INSERT INTO crm_rows (id, workspace_id, email)
         SELECT gen_random_uuid(), $1, 'lead-' || g || '@example.com' FROM generate_series(1, 2000) g",
    )
    .bind(ws)
    .execute(&app.pool)
    .await
    .unwrap();

    eventually(Duration::from_secs(10), || async { analysed().await == 1 }).await;
}
