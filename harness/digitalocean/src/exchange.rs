//! What the fake records of each request it answers: shared by the fake, which writes
//! exchanges, and the spec checker, which reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One request and the response it got (`None`: the connection was dropped on purpose).
/// Never holds the token; a create's `user_data` (TLS keys) is replaced by its size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub request_content_type: Option<String>,
    pub request_body: Option<Value>,
    pub response: Option<RecordedResponse>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordedResponse {
    pub status: u16,
    /// Header names in lower case; `content-type` as wiremock sends it.
    pub headers: BTreeMap<String, String>,
    pub body: Option<Value>,
}
