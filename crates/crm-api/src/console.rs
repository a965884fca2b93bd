//! The admin console: a few static files (vanilla JS modules, no build step) embedded in the binary and served at
//! `GET /` and `GET /console/{file}`. The console talks only to the public REST API (`/v1/*`) with a workspace
//! token the user enters; nothing here reads the database or sees a token.
//!
//! Every response carries a strict `Content-Security-Policy` (only this origin: no inline script or style, no
//! framing), `X-Content-Type-Options: nosniff`, and an `ETag` so the browser revalidates (`Cache-Control: no-cache`)
//! and picks up a new binary's files at once without downloading unchanged ones again.

use crate::error::ApiError;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The policy for every console response: same origin only, no inline code, no plugins, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: std::borrow::Cow<'static, [u8]>,
    /// Strong `ETag` of the body.
    etag: String,
}

impl Asset {
    fn new(name: &'static str, content_type: &'static str, body: impl Into<std::borrow::Cow<'static, [u8]>>) -> Self {
        let body = body.into();
        let digest = Sha256::digest(&body);
        let etag = format!("\"{}\"", webhook_signing::hex::encode(&digest[..16]));
        Asset { name, content_type, body, etag }
    }
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// The console's files, tagged once: the static ones embedded at build time, and `fields.js`, the row's field list
/// written from the same definition as the API's rows (`crm_mapping::FIELDS`), so the sheet's columns cannot drift
/// from the rows the API serves.
fn assets() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        vec![
            Asset::new("index.html", "text/html; charset=utf-8", &include_bytes!("../console/index.html")[..]),
            Asset::new("app.js", JAVASCRIPT, &include_bytes!("../console/app.js")[..]),
            Asset::new("common.js", JAVASCRIPT, &include_bytes!("../console/common.js")[..]),
            Asset::new("leads.js", JAVASCRIPT, &include_bytes!("../console/leads.js")[..]),
            Asset::new("sheet.js", JAVASCRIPT, &include_bytes!("../console/sheet.js")[..]),
            Asset::new("settings.js", JAVASCRIPT, &include_bytes!("../console/settings.js")[..]),
            Asset::new("deliveries.js", JAVASCRIPT, &include_bytes!("../console/deliveries.js")[..]),
            Asset::new("delivery.js", JAVASCRIPT, &include_bytes!("../console/delivery.js")[..]),
            Asset::new("health.js", JAVASCRIPT, &include_bytes!("../console/health.js")[..]),
            Asset::new("stats.js", JAVASCRIPT, &include_bytes!("../console/stats.js")[..]),
            Asset::new("recovery.js", JAVASCRIPT, &include_bytes!("../console/recovery.js")[..]),
            Asset::new("fields.js", JAVASCRIPT, fields_js().into_bytes()),
            Asset::new("app.css", "text/css; charset=utf-8", &include_bytes!("../console/app.css")[..]),
            Asset::new("favicon.svg", "image/svg+xml", &include_bytes!("../console/favicon.svg")[..]),
        ]
    })
}

/// `fields.js`: `export const FIELDS = [{name, label, kind, editable, nullable}, ...]`, in column order.
fn fields_js() -> String {
    use crm_mapping::Kind;
    let fields: Vec<serde_json::Value> = crm_mapping::FIELDS
        .iter()
        .map(|f| {
            let kind = match f.kind {
                Kind::Uuid => "uuid",
                Kind::Integer { .. } => "integer",
                Kind::Text { .. } => "text",
                Kind::Email => "email",
                Kind::Url { .. } => "url",
                Kind::Stage => "stage",
                Kind::Decimal => "decimal",
                Kind::Currency => "currency",
                Kind::Timestamp => "timestamp",
                Kind::Object => "object",
            };
            serde_json::json!({
                "name": f.name, "label": f.label, "kind": kind, "editable": f.editable(), "nullable": f.nullable,
                "max_chars": f.max_chars(),
            })
        })
        .collect();
    format!(
        "// The CRM row's fields in column order, written by crm-api from crm-mapping's field list.\n\
         export const FIELDS = {};\n",
        serde_json::to_string_pretty(&fields).unwrap_or_else(|_| "[]".into())
    )
}

/// The console's routes: `GET /` (the page) and `GET /console/{file}` (its scripts, styles and icon).
pub fn router() -> Router {
    routes().into()
}

/// [`router`], with the routes' OpenAPI descriptions.
pub fn routes() -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(index)).routes(routes!(file))
}

/// The admin console (HTML page)
///
/// The console's single page: sign-in, CRM / Leads, Analytics > CRM (the sheet), Settings > CRM webhook (with the
/// endpoint's health) and Deliveries (health, charts, bulk recovery, the log, each attempt's request). No authentication; the page asks for a workspace id and token and keeps them in session storage.
#[utoipa::path(get, path = "/", tag = "console", operation_id = "getConsole", responses(
    (status = 200, description = "The page.", content_type = "text/html; charset=utf-8", body = String, headers(
        ("Content-Security-Policy" = String, description = "`default-src 'self'` and stricter: no inline script or \
            style, no framing."),
        ("X-Content-Type-Options" = String, description = "`nosniff`."),
        ("Cache-Control" = String, description = "`no-cache`: the browser revalidates with the `ETag`."),
        ("ETag" = String, description = "A strong tag of the file's content."))),
    (status = 304, description = "Not modified (`If-None-Match` matched the `ETag`)."),
))]
async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `{file}`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct FileParam {
    /// `app.js`, `common.js`, `leads.js`, `sheet.js`, `settings.js`, `deliveries.js`, `delivery.js`, `health.js`,
    /// `stats.js`, `recovery.js`, `fields.js` (JavaScript modules), `app.css` or `favicon.svg`.
    file: String,
}

/// One of the console's static files
///
/// The JavaScript modules (`app.js` the shell, one module per view, the panels the views share: `health.js`,
/// `stats.js`, `recovery.js`; `common.js`, and `fields.js`, the row's field list written by crm-api from the same
/// definition as the API's rows), `app.css` and `favicon.svg`. No authentication.
#[utoipa::path(get, path = "/console/{file}", tag = "console", operation_id = "getConsoleFile", params(FileParam),
    responses(
        (status = 200, description = "The file, with its content type.", body = String, headers(
            ("Content-Security-Policy" = String, description = "`default-src 'self'` and stricter."),
            ("X-Content-Type-Options" = String, description = "`nosniff`."),
            ("Cache-Control" = String, description = "`no-cache`: the browser revalidates with the `ETag`."),
            ("ETag" = String, description = "A strong tag of the file's content."))),
        (status = 304, description = "Not modified (`If-None-Match` matched the `ETag`)."),
        (status = 404, description = "No such file.", body = crate::error::Problem,
            content_type = "application/problem+json"),
    ))]
async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(asset) = assets().iter().find(|a| a.name == name) else {
        let mut response = ApiError::NotFound("file").into_response();
        security_headers(response.headers_mut());
        return response;
    };
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == asset.etag || tag.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, asset.body.clone().into_owned()).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(tag) = HeaderValue::from_str(&asset.etag) {
        h.insert(header::ETAG, tag);
    }
    security_headers(h);
    response
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_tagged() {
        for asset in assets() {
            assert!(!asset.body.is_empty(), "{} is empty", asset.name);
            assert_eq!(asset.etag.len(), 34, "{}", asset.name);
        }
        let page = std::str::from_utf8(&assets()[0].body).expect("index.html is UTF-8");
        // The policy forbids inline code; the page must not need any.
        assert!(!page.contains("<script>") && !page.contains("style="), "index.html has inline code");
    }

    #[test]
    fn the_sheet_takes_its_columns_from_the_field_list() {
        let js = fields_js();
        let json = js.split_once("FIELDS = ").and_then(|(_, rest)| rest.trim_end().strip_suffix(';')).unwrap_or("");
        let fields: Vec<serde_json::Value> = serde_json::from_str(json).expect("fields.js holds a JSON array");
        let names: Vec<&str> = fields.iter().filter_map(|f| f["name"].as_str()).collect();
        assert_eq!(names, crm_mapping::ROW_FIELDS);
        let script = |name: &str| {
            let asset = assets().iter().find(|a| a.name == name).expect("a console file");
            std::str::from_utf8(&asset.body).expect("UTF-8").to_owned()
        };
        assert!(script("common.js").contains("from './fields.js'"), "the console must take the columns from fields.js");
        for name in [
            "app.js",
            "common.js",
            "leads.js",
            "sheet.js",
            "settings.js",
            "deliveries.js",
            "delivery.js",
            "health.js",
            "stats.js",
            "recovery.js",
        ] {
            let js = script(name);
            for field in crm_mapping::FIELDS.iter().filter(|f| !matches!(f.name, "id" | "email")) {
                assert!(
                    !js.contains(&format!("'{}', '", field.name)),
                    "{name} lists row fields itself: {}",
                    field.name
                );
            }
        }
    }

    #[test]
    fn unknown_files_are_404_and_known_ones_revalidate() {
        let response = serve("../Cargo.toml", &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let ok = serve("app.js", &HeaderMap::new());
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let tag = ok.headers()[header::ETAG].clone();
        let mut request = HeaderMap::new();
        request.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(serve("app.js", &request).status(), StatusCode::NOT_MODIFIED);
    }
}
