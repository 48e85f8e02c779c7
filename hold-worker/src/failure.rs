//! How the hold says no: an XRPC error name, its status, and a message a
//! person can act on. Every handler returns `Result<Response, Failure>`, and
//! this is the one place that turns a `Failure` into a response.

use crate::storage::StorageError;
use atcr_protocol::hold_api::{HoldError, XrpcError};
use worker::Response;

#[derive(Debug)]
pub struct Failure {
    pub kind: HoldError,
    pub message: String,
}

impl Failure {
    pub fn new(kind: HoldError, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }

    pub fn into_response(self) -> worker::Result<Response> {
        let (name, status) = self.kind.name_and_status();
        if status >= 500 {
            worker::console_error!("{name}: {}", self.message);
        }
        let body = XrpcError {
            error: name.into(),
            message: self.message,
        };
        Ok(Response::from_json(&body)?.with_status(status))
    }
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => {
                Failure::new(HoldError::BlobNotFound, "no such object in storage")
            }
            StorageError::Failed(why) => Failure::new(HoldError::StorageError, why),
        }
    }
}

impl From<worker::Error> for Failure {
    fn from(e: worker::Error) -> Self {
        Failure::new(HoldError::StorageError, format!("runtime error: {e}"))
    }
}
