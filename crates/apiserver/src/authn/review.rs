//! `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: the caller
//! learns who the server thinks it is (`kubectl auth whoami`). Nothing is
//! stored; the answer is the request's own user.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::User;

pub fn self_subject_review(user: &User) -> Response {
    crate::handlers::json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": crate::meta::now_rfc3339()},
            "status": {"userInfo": user.user_info()},
        }),
    )
}
