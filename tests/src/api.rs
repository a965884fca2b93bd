//! A typed client for crm-api, so tests read as what they check.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::ADMIN_TOKEN;

#[derive(Clone)]
pub struct Api {
    pub base: String,
    http: reqwest::Client,
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts the status, printing the body on mismatch.
    #[track_caller]
    pub fn expect(self, status: u16) -> Response {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        self
    }

    /// Asserts a problem+json error of `status` naming `field`.
    #[track_caller]
    pub fn expect_problem(self, status: u16, field: Option<&str>) -> Response {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        let content_type = self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(content_type, "application/problem+json", "body: {}", self.text);
        let body = self.json();
        assert_eq!(body["status"], status, "{body}");
        assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(), "{body}");
        if let Some(field) = field {
            let fields: Vec<&str> =
                body["errors"].as_array().into_iter().flatten().filter_map(|e| e["field"].as_str()).collect();
            assert!(fields.contains(&field), "expected field {field} in {body}");
        }
        self
    }
}

impl Api {
    pub fn new(base: String) -> Api {
        Api { base, http: reqwest::Client::builder().no_proxy().build().expect("http client") }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body read");
        Response { status, headers, text }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send(Method::GET, path, token, None, &[]).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.send(Method::POST, path, token, Some(body), &[]).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.send(Method::PUT, path, token, Some(body), &[]).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value, headers: &[(&str, &str)]) -> Response {
        self.send(Method::PATCH, path, token, Some(body), headers).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.send(Method::DELETE, path, token, None, &[]).await
    }

    pub async fn create_workspace(&self, name: &str) -> Uuid {
        let body = self.post("/admin/workspaces", Some(ADMIN_TOKEN), &json!({"name": name})).await.expect(201).json();
        body["id"].as_str().and_then(|s| s.parse().ok()).expect("workspace id")
    }

    pub async fn create_token(&self, ws: Uuid, role: &str) -> String {
        let path = format!("/admin/workspaces/{ws}/tokens");
        let body = self.post(&path, Some(ADMIN_TOKEN), &json!({"role": role, "name": role})).await.expect(201).json();
        body["token"].as_str().expect("token").to_owned()
    }

    /// Records interest for `email`; returns the response.
    pub async fn interest(&self, ws: Uuid, token: &str, email: &str) -> Response {
        self.post(&format!("/v1/workspaces/{ws}/crm/interest"), Some(token), &interest_body(email)).await
    }

    pub async fn row(&self, ws: Uuid, token: &str, id: &str) -> Response {
        self.get(&format!("/v1/workspaces/{ws}/crm/rows/{id}"), Some(token)).await
    }
}

/// A typical interest upsert body.
pub fn interest_body(email: &str) -> Value {
    json!({
        "lead": {"email": email, "first_name": "Ada", "last_name": "Lovelace", "company": "Analytical Engines"},
        "interest": {"type": "positive_reply", "channel": "email", "message": "Sounds great, let's talk"},
        "campaign": "autumn-outreach",
    })
}
