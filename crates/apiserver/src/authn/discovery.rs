//! OIDC discovery for service-account tokens, as upstream serves it:
//! `/.well-known/openid-configuration` and `/openid/v1/jwks`, so a party
//! outside the cluster can verify tokens with the public key alone.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::status::{ApiError, ApiResult};
use crate::storage::Storage;

fn tokens(storage: &Storage) -> ApiResult<&super::Tokens> {
    storage.service_accounts.as_deref().ok_or_else(ApiError::no_route)
}

pub fn openid_configuration(storage: &Storage) -> ApiResult<Response> {
    let t = tokens(storage)?;
    let doc = json!({
        "issuer": t.issuer,
        "jwks_uri": format!("{}/openid/v1/jwks", t.issuer),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    });
    Ok((StatusCode::OK, [("content-type", "application/json")], doc.to_string()).into_response())
}

pub fn jwks(storage: &Storage) -> ApiResult<Response> {
    let t = tokens(storage)?;
    let doc = json!({"keys": [t.signer.verifier.jwk()]});
    Ok((StatusCode::OK, [("content-type", "application/jwk-set+json")], doc.to_string()).into_response())
}
