//! Who is calling: subject, client, merchant and scopes, taken from verified claims.

use std::collections::BTreeSet;

use serde_json::Value;
use uuid::Uuid;

use super::Claims;
use crate::error::ApiError;
use docbundle_domain::{MerchantId, Scope};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub client_id: Option<String>,
    /// The caller's merchant; `None` for platform callers that act across merchants.
    pub merchant_id: Option<MerchantId>,
    pub scopes: BTreeSet<String>,
}

impl Principal {
    pub(crate) fn from_claims(claims: &Claims, merchant_claim: &str) -> Result<Self, ApiError> {
        let string = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let client_id = string("client_id").or_else(|| string("azp"));
        let subject = string("sub")
            .or_else(|| client_id.clone())
            .ok_or_else(|| ApiError::unauthorized("Token has no subject"))?;
        let scopes = string("scope")
            .unwrap_or_default()
            .split_ascii_whitespace()
            .map(str::to_owned)
            .collect();
        let merchant_id = match claims.get(merchant_claim) {
            None | Some(Value::Null) => None,
            Some(Value::String(raw)) => {
                Some(MerchantId::new(Uuid::parse_str(raw).map_err(|_| {
                    ApiError::unauthorized(format!("Claim `{merchant_claim}` is not a merchant id"))
                })?))
            }
            Some(_) => {
                return Err(ApiError::unauthorized(format!(
                    "Claim `{merchant_claim}` is not a merchant id"
                )))
            }
        };
        Ok(Principal {
            subject,
            client_id,
            merchant_id,
            scopes,
        })
    }

    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(scope.as_str())
    }

    /// `403` unless the token carries `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "This operation needs the `{scope}` scope"
            )))
        }
    }

    pub fn is_admin(&self) -> bool {
        self.has_scope(Scope::MerchantAdmin)
    }

    /// The merchant whose data this request acts on. Merchant callers always act on their own
    /// (a different `requested` merchant is `404`: its existence is not disclosed); admins must
    /// name one.
    pub fn acting_merchant(&self, requested: Option<Uuid>) -> Result<MerchantId, ApiError> {
        match (self.merchant_id, requested) {
            (Some(own), None) => Ok(own),
            (Some(own), Some(other)) if own.as_uuid() == other => Ok(own),
            (_, Some(other)) if self.is_admin() => Ok(MerchantId::new(other)),
            (Some(_), Some(_)) => Err(ApiError::not_found("Merchant not found")),
            (None, None) if self.is_admin() => Err(ApiError::validation(
                "A platform caller must say which merchant it acts on",
                vec![crate::error::FieldError::new("merchantId", "is required")],
            )),
            (None, _) => Err(ApiError::forbidden("Token is not bound to a merchant")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    const A: &str = "11111111-1111-4111-8111-111111111111";
    const B: &str = "22222222-2222-4222-8222-222222222222";

    #[test]
    fn scopes_and_merchant_come_from_claims() {
        let p = Principal::from_claims(
            &claims(json!({"sub":"svc","client_id":"merchant-a","scope":"bundle.read  config.read","merchant_id":A})),
            "merchant_id",
        )
        .unwrap();
        assert!(p.has_scope(Scope::BundleRead) && p.has_scope(Scope::ConfigRead));
        assert!(!p.has_scope(Scope::BundleWrite));
        assert_eq!(p.merchant_id.unwrap().to_string(), A);
        assert_eq!(
            p.require(Scope::BundleWrite).unwrap_err().status().as_u16(),
            403
        );
    }

    #[test]
    fn the_merchant_claim_name_is_configurable_and_checked() {
        let c = claims(json!({"sub":"s","tenant":A}));
        assert!(Principal::from_claims(&c, "tenant")
            .unwrap()
            .merchant_id
            .is_some());
        assert!(Principal::from_claims(&c, "merchant_id")
            .unwrap()
            .merchant_id
            .is_none());
        let bad = claims(json!({"sub":"s","merchant_id":"not-a-uuid"}));
        assert_eq!(
            Principal::from_claims(&bad, "merchant_id")
                .unwrap_err()
                .status()
                .as_u16(),
            401
        );
    }

    #[test]
    fn merchants_never_reach_another_merchant() {
        let p = Principal::from_claims(&claims(json!({"sub":"s","merchant_id":A})), "merchant_id")
            .unwrap();
        assert_eq!(p.acting_merchant(None).unwrap().to_string(), A);
        let other = Uuid::parse_str(B).unwrap();
        assert_eq!(
            p.acting_merchant(Some(other))
                .unwrap_err()
                .status()
                .as_u16(),
            404
        );

        let admin = Principal::from_claims(
            &claims(json!({"sub":"s","scope":"merchant.admin"})),
            "merchant_id",
        )
        .unwrap();
        assert_eq!(admin.acting_merchant(Some(other)).unwrap().to_string(), B);
        assert_eq!(
            admin.acting_merchant(None).unwrap_err().status().as_u16(),
            422
        );
    }
}
