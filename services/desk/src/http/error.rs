//! Every API error becomes JSON `{"error": "..."}` here, in one place. Database and internal
//! errors become 500 with the cause logged, never returned.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("sign in required")]
    Unauthorized,
    #[error("your role may not do this")]
    Forbidden,
    #[error("{0}")]
    BadRequest(String),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("too many failed sign-ins; try again in {0} s")]
    TooManyAttempts(u64),
    #[error("the desk is busy signing others in; try again in a moment")]
    Busy,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Database(e) => {
                tracing::error!(error = %e, "desk database error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "desk internal error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let message = match &self {
            ApiError::Database(_) | ApiError::Internal(_) => "internal error; it has been logged".to_string(),
            // Messages can echo what was sent: masked, like everything typed.
            other => lantern_shared::domain::mask::mask(&other.to_string()),
        };
        let retry_after = match &self {
            ApiError::TooManyAttempts(secs) => Some(*secs),
            ApiError::Busy => Some(1),
            _ => None,
        };
        let mut resp = (status, Json(serde_json::json!({"error": message}))).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        // API clients may answer with Basic; the page's own requests never see this challenge
        // (the router's guard takes it off them), or the browser would show its own prompt.
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"lantern\", charset=\"UTF-8\""));
        }
        resp
    }
}

/// A JSON body that answers 400 with our error shape when it is not valid JSON.
pub struct JsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes =
            axum::body::Bytes::from_request(req, state).await.map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
        let text = if bytes.is_empty() { &b"{}"[..] } else { &bytes[..] };
        serde_json::from_slice(text)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON for this request: {e}")))
    }
}
