//! References to Secrets.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::limits::{MAX_NAME_LEN, NAME_PATTERN, SECRET_KEY_PATTERN};

/// A key of a Secret in the referring object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = MAX_NAME_LEN), regex(pattern = NAME_PATTERN))]
    pub name: String,

    /// Key within the Secret; each field that takes a SecretKeyRef documents its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_NAME_LEN), regex(pattern = SECRET_KEY_PATTERN))]
    pub key: Option<String>,
}

impl SecretKeyRef {
    /// A reference to `key` of Secret `name`.
    pub fn new(name: impl Into<String>, key: Option<&str>) -> Self {
        Self {
            name: name.into(),
            key: key.map(str::to_owned),
        }
    }

    /// The key, or `default` when none is named.
    pub fn key_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.key.as_deref().unwrap_or(default)
    }
}
