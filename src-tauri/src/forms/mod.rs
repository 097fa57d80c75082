//! What the window sends and gets, one module per tab as in `ui/js/` (`account`, `settings`,
//! `delivery`): the forms, the views, and how their fields map to an [`Account`] and to config
//! keys. No rules live here: an account is checked by [`Account::check`] and each preference by
//! [`Config::set`]; their problems come back next to the field they name ([`UiError`]). Views
//! never carry a saved password.
//!
//! [`Account`]: mailcall_core::account::Account
//! [`Account::check`]: mailcall_core::account::Account::check
//! [`Config::set`]: mailcall_core::config::Config::set

mod account;
mod delivery;
mod settings;

use std::collections::BTreeMap;

use mailcall_core::config::{ConfigError, ConfigKey};
use serde::Serialize;

pub use account::{
    account_field_name, AccountForm, AccountView, CheckView, DomainRow, ListenerCheck,
    ACCOUNT_FIELDS,
};
pub use delivery::{
    DeliveryForm, DeliveryView, RouteForm, RouteView, DELIVERY_FIELDS, ROUTES_LABEL,
};
pub use settings::{SettingsForm, SETTINGS_FIELDS, SUBMIT_PASSWORD_FIELD};

/// The field for config `key` in the Settings or Delivery tab, when the window shows that key.
pub fn settings_field_name(key: ConfigKey) -> Option<&'static str> {
    SETTINGS_FIELDS
        .iter()
        .chain(DELIVERY_FIELDS)
        .find(|(k, _, _)| *k == key)
        .map(|(_, name, _)| *name)
}

/// An error for the window: a message, and per-field messages shown next to the fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UiError {
    /// What went wrong and what to do.
    pub message: String,
    /// Field name → what is wrong with it.
    pub fields: BTreeMap<String, String>,
}

impl UiError {
    /// An error not tied to a field.
    pub fn new(message: impl Into<String>) -> Self {
        UiError {
            message: message.into(),
            fields: BTreeMap::new(),
        }
    }

    /// Adds a message next to the field `name` (the first one given for a field stays).
    pub fn field(&mut self, name: impl Into<String>, message: impl Into<String>) {
        self.fields
            .entry(name.into())
            .or_insert_with(|| sentence(&message.into()));
    }

    fn into_result<T>(self, ok: T) -> Result<T, UiError> {
        if self.fields.is_empty() {
            Ok(ok)
        } else {
            Err(self.marked())
        }
    }

    /// The field messages, with the message that points at them.
    fn marked(self) -> UiError {
        UiError {
            message: "Please correct the marked fields.".into(),
            ..self
        }
    }
}

impl<E: std::fmt::Display> From<E> for UiError {
    fn from(e: E) -> Self {
        UiError::new(e.to_string())
    }
}

/// The core's rule texts start in lower case (they follow a field's name in the CLI); next to
/// a field in the window they read as a sentence.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Text to a value; an empty field is `None`.
fn optional(text: &str) -> Option<String> {
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// What is wrong with a value, without the key in front (the field says which).
pub fn config_problem(e: &ConfigError) -> String {
    match e {
        ConfigError::Invalid { problem, .. } => problem.clone(),
        e => e.to_string(),
    }
}
