//! Prints the row's schema definitions (`$defs`) as `proto-schemas/` must hold them:
//! `cargo run -q -p crm-mapping --example row-schema`. `crm_mapping::schema`'s tests fail until the stored files
//! match.

fn main() {
    let defs = serde_json::Value::Object(crm_mapping::schema::row_schema_defs());
    println!("{}", serde_json::to_string_pretty(&defs).unwrap_or_default());
}
