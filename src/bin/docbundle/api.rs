//! The API client: bearer tokens from the profile (renewed once when refused), and every
//! non-2xx answer turned into an [`ApiError`] carrying the envelope's code, message, field
//! details and request id, so that a user can quote it.

use std::fmt;

use anyhow::Context;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use crate::profile::Credentials;

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Option<String>,
    pub message: String,
    pub details: Vec<(String, String)>,
    pub request_id: Option<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {}", self.message, self.status.as_u16())?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, "; request id {id}")?;
        }
        f.write_str(")")?;
        for (field, message) in &self.details {
            write!(f, "\n  {field}: {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    async fn from_response(response: Response) -> ApiError {
        let status = response.status();
        let header_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: Value = response.json().await.unwrap_or_default();
        let error = &body["error"];
        let details = error["details"]
            .as_array()
            .map(|details| {
                details
                    .iter()
                    .map(|d| {
                        (
                            d["field"].as_str().unwrap_or("?").to_owned(),
                            d["message"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        ApiError {
            status,
            code: error["code"].as_str().map(str::to_owned),
            message: error["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    format!(
                        "the API answered {}",
                        status.canonical_reason().unwrap_or("an error")
                    )
                }),
            details,
            request_id: error["requestId"].as_str().map(str::to_owned).or(header_id),
        }
    }
}

pub struct Client {
    /// `…/api/v1`.
    base: String,
    credentials: Credentials,
    http: reqwest::Client,
}

impl Client {
    pub fn new(api: &str, credentials: Credentials, http: reqwest::Client) -> anyhow::Result<Self> {
        let api = api.trim_end_matches('/');
        let api = api.strip_suffix("/api/v1").unwrap_or(api);
        reqwest::Url::parse(api).with_context(|| format!("`{api}` is not a URL"))?;
        Ok(Client {
            base: format!("{api}/api/v1"),
            credentials,
            http,
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends `method path` (under `/api/v1`) as `build` shapes it; an error answer becomes an
    /// [`ApiError`]. A refused profile token is renewed and the request sent once more.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> anyhow::Result<Response> {
        let url = format!("{}{path}", self.base);
        let mut renew = false;
        loop {
            let mut request = build(self.http.request(method.clone(), &url));
            if let Some(token) = self.credentials.token(&self.http, renew).await? {
                request = request.bearer_auth(token);
            }
            let response = request
                .send()
                .await
                .with_context(|| format!("cannot reach the API at {url}"))?;
            if response.status() == StatusCode::UNAUTHORIZED
                && !renew
                && self.credentials.renewable()
            {
                renew = true;
                continue;
            }
            if !response.status().is_success() {
                return Err(ApiError::from_response(response).await.into());
            }
            return Ok(response);
        }
    }

    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        self.get(path).await
    }

    /// `GET path`, its answer read as `T` (the type the server sends).
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send(Method::GET, path, |r| r).await?;
        response
            .json()
            .await
            .with_context(|| format!("the API's answer to GET {path} is not what it documents"))
    }

    /// The items of a paged list (with `filters` as query parameters), up to `limit`.
    pub async fn list(
        &self,
        path: &str,
        filters: &[(&'static str, String)],
        limit: u32,
    ) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page_limit = (limit as usize - items.len()).min(100);
            let mut query = filters.to_vec();
            query.push(("limit", page_limit.to_string()));
            if let Some(cursor) = &cursor {
                query.push(("cursor", cursor.clone()));
            }
            let response = self.send(Method::GET, path, |r| r.query(&query)).await?;
            let page: Value = response.json().await.context("a page that is not JSON")?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            cursor = page["nextCursor"].as_str().map(str::to_owned);
            if cursor.is_none() || items.len() >= limit as usize {
                items.truncate(limit as usize);
                return Ok(items);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_names_its_code_request_id_and_fields() {
        let error = ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: Some("VALIDATION_FAILED".into()),
            message: "the configuration is invalid".into(),
            details: vec![("documents[0].template".into(), "unclosed (line 3)".into())],
            request_id: Some("abc".into()),
        };
        assert_eq!(
            error.to_string(),
            "the configuration is invalid (HTTP 422 VALIDATION_FAILED; request id abc)\n  \
             documents[0].template: unclosed (line 3)"
        );
    }

    #[test]
    fn the_base_is_the_api_root_however_it_is_given() {
        for api in ["http://h:3000", "http://h:3000/", "http://h:3000/api/v1/"] {
            let client = Client::new(api, Credentials::None, reqwest::Client::new()).unwrap();
            assert_eq!(client.base, "http://h:3000/api/v1");
        }
        assert!(Client::new("not a url", Credentials::None, reqwest::Client::new()).is_err());
    }
}
