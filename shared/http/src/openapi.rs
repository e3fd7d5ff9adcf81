//! What the OpenAPI document says beside the handlers' own annotations: the error envelope,
//! the answers built as JSON in a handler, the security schemes and the document's frame.
//! Each function crate describes its operations (`#[utoipa::path]` on the handlers, an
//! `ApiDoc` listing them); [`document`] joins them into the one document clients build on.

use chrono::{DateTime, Utc};
use serde_json::Value;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::Type;
use utoipa::openapi::security::{
    ClientCredentials, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Scopes, SecurityScheme,
};
use utoipa::openapi::{InfoBuilder, ObjectBuilder, OpenApi, RefOr, ServerBuilder};
use uuid::Uuid;

use crate::error::FieldError;
use docbundle_domain::Scope;

/// The token URL the committed document names; [`for_issuer`] puts the deployment's own in
/// its place when the document is served.
pub const TOKEN_URL_PLACEHOLDER: &str =
    "https://issuer.example.com/realms/docbundle/protocol/openid-connect/token";

/// The document as a deployment serves it: its OAuth2 token URL at the issuer it trusts.
pub fn for_issuer(document: &str, issuer: &str) -> String {
    let token_url = format!("{issuer}/protocol/openid-connect/token");
    let quoted = serde_json::to_string(&token_url).unwrap_or_default();
    document.replace(&format!("\"{TOKEN_URL_PLACEHOLDER}\""), &quoted)
}

/// The name of the OAuth2 (client credentials) security scheme.
pub const OAUTH2: &str = "oauth2";
/// The name of the bearer (JWT) security scheme: the same tokens, for clients that get them
/// elsewhere.
pub const BEARER: &str = "bearer";

/// Every error answer: `{"error": {...}}`.
#[derive(Debug, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// A stable code: `VALIDATION_FAILED`, `UNAUTHORIZED`, `FORBIDDEN`, `NOT_FOUND`,
    /// `CONFLICT`, `PRECONDITION_FAILED`, `PRECONDITION_REQUIRED`, `PAYLOAD_TOO_LARGE`,
    /// `UNSUPPORTED_MEDIA_TYPE`, `RATE_LIMITED`, `METHOD_NOT_ALLOWED`, `INTERNAL_ERROR`, `UNAVAILABLE`, …
    pub code: String,
    pub message: String,
    /// For a refused request, one entry per offending field (`documents[2].template`), with
    /// line and column where the template engine gives them; for some codes the figures that
    /// explain it instead (`GONE`: `expiredAt`, `expiredBy`; `CONFIRMATION_REQUIRED` and
    /// `ERASURE_TOO_LARGE`: `runs`, `max`).
    pub details: Option<ErrorDetails>,
    pub timestamp: DateTime<Utc>,
    /// The request's id (also the `x-request-id` header): quote it when asking for help.
    pub request_id: String,
}

/// An error's details: its fields, or its figures.
#[derive(Debug, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ErrorDetails {
    Fields(Vec<FieldError>),
    Figures(std::collections::BTreeMap<String, Value>),
}

/// A webhook source as created or rotated: with its signing secret, shown only here.
#[derive(Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSourceWithSecret {
    #[serde(flatten)]
    pub source: docbundle_infra::db::inbound::WebhookSource,
    /// `whsec_…` (Standard Webhooks): sign with it, keep it secret.
    pub secret: String,
}

/// What an accepted inbound event launched.
#[derive(Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboundAccepted {
    pub event_id: Uuid,
    /// The runs launched, one per configuration that listens to the event's type.
    pub runs: Vec<Uuid>,
    /// Configurations that listen to the type but were skipped, with why.
    pub skipped: Vec<Value>,
}

pub use docbundle_domain::document::{DocumentName, InboundEventType, PdfStandard};

/// A query's text cannot hold a NUL (`%00`): PostgreSQL cannot store one, and every query is
/// refused with `422` for it ([`crate::ApiQuery`]). Every string query parameter that says
/// nothing stricter says so.
fn no_nul_in_queries(operation: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::SchemaType;
    use utoipa::openapi::Schema;
    for parameter in operation.parameters.iter_mut().flatten() {
        if parameter.parameter_in != ParameterIn::Query {
            continue;
        }
        if let Some(RefOr::T(Schema::Object(object))) = parameter.schema.as_mut() {
            let string = match &object.schema_type {
                SchemaType::Type(t) => *t == Type::String,
                SchemaType::Array(types) => types.contains(&Type::String),
                SchemaType::AnyValue => false,
            };
            if string && object.pattern.is_none() {
                object.pattern = Some("^[^\\u0000]*$".to_owned());
            }
        }
    }
}

/// Says in the schema `schema` that exactly one of `fields` is given (a body naming one target
/// among several optional fields): `allOf: [<the schema>, {oneOf: [{required: [field]}, …]}]`,
/// which a client's validator and a test generator both read.
pub fn exactly_one_of(openapi: &mut OpenApi, schema: &str, fields: &[&str]) {
    use utoipa::openapi::schema::{AllOfBuilder, OneOfBuilder, Schema};
    let Some(components) = openapi.components.as_mut() else {
        return;
    };
    let Some(original) = components.schemas.remove(schema) else {
        return;
    };
    let mut one_of = OneOfBuilder::new();
    for field in fields {
        one_of = one_of.item(ObjectBuilder::new().required(*field));
    }
    let combined = AllOfBuilder::new().item(original).item(one_of).build();
    components
        .schemas
        .insert(schema.to_owned(), RefOr::T(Schema::AllOf(combined)));
}

/// The document's frame (title, version, servers, security schemes) around `paths`, and
/// what every answer carries: the `x-request-id` header.
pub fn document(mut paths: OpenApi) -> OpenApi {
    for item in paths.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            no_nul_in_queries(operation);
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.headers.insert(
                        "x-request-id".to_owned(),
                        HeaderBuilder::new()
                            .schema(ObjectBuilder::new().schema_type(Type::String))
                            .description(Some(
                                "The request's id: API Gateway's, or the caller's own \
                                 `x-request-id`, else a new one",
                            ))
                            .build(),
                    );
                }
            }
        }
    }
    paths.info = InfoBuilder::new()
        .title("docbundle")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Versioned document templates and JSON seeds in; signed, reproducible document \
             bundles out. Every error answers the envelope `{\"error\": {...}}` with a \
             request id.",
        ))
        .build();
    paths.servers = Some(vec![ServerBuilder::new()
        .url("/")
        .description(Some("the API's own origin"))
        .build()]);
    let components = paths.components.get_or_insert_with(Default::default);
    let scopes = [
        (Scope::BundleRead, "read bundle runs"),
        (Scope::BundleWrite, "launch bundle runs"),
        (Scope::BundleForce, "launch with skipValidations"),
        (
            Scope::BundleErase,
            "erase runs' artefacts and seeds on request",
        ),
        (Scope::ConfigRead, "read configurations"),
        (
            Scope::ConfigWrite,
            "create, update and archive configurations",
        ),
        (
            Scope::MerchantAdmin,
            "manage merchants and webhook sources (platform)",
        ),
    ];
    components.add_security_scheme(
        OAUTH2,
        SecurityScheme::OAuth2(OAuth2::with_description(
            [Flow::ClientCredentials(ClientCredentials::new(
                TOKEN_URL_PLACEHOLDER,
                Scopes::from_iter(scopes.map(|(s, d)| (s.as_str(), d))),
            ))],
            "Client credentials at the deployment's issuer (`OIDC_ISSUER_URL`): its token \
             endpoint is `<issuer>/protocol/openid-connect/token`. The token's `scope` claim \
             carries the scopes; `merchant_id` the merchant.",
        )),
    );
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    paths
}
