//! Customers: who watches which issues, their read-only portal, and how healthy the relationship
//! looks (spec §11).

mod health;
mod stats;

pub use health::{
    CRITICAL_STALE_AFTER_DAYS, HealthBand, HealthInputs, HealthIssue, HealthMetrics,
    STALE_AFTER_DAYS, health_band, health_metrics, health_score, is_critical_stale, is_stale,
};
pub use stats::{
    ActivityItem, ActivityKind, CustomerIssueFilter, IssueAge, comment_preview, days_since,
    issue_age, issue_list_order, merge_activity, summary_order,
};

use crate::Timestamp;
use crate::error::{Error, Result};
use crate::ids::{CustomerId, CustomerUserId, WorkspaceId};
use crate::issue::is_valid_hex_color;
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// The portal's fallback brand colour.
pub const DEFAULT_BRAND_COLOR: &str = "#6366f1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub slug: String,
    pub slack_channel_id: Option<String>,
    /// 64 lowercase hex characters (256 random bits). A secret: never log it.
    pub portal_token: String,
    pub brand_color: Option<String>,
    pub logo_url: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Customer {
    pub fn brand_color_or_default(&self) -> &str {
        self.brand_color.as_deref().unwrap_or(DEFAULT_BRAND_COLOR)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewCustomer {
    pub name: String,
    /// Derived from the name when absent.
    pub slug: Option<String>,
    pub slack_channel_id: Option<String>,
    pub brand_color: Option<String>,
    pub logo_url: Option<String>,
}

impl NewCustomer {
    /// Validates and fills in the slug; returns the slug to use.
    pub fn validate(&self) -> Result<String> {
        if self.name.trim().is_empty() {
            return Err(Error::invalid("name", "customer name is required"));
        }
        let slug = match &self.slug {
            Some(s) => {
                validate_slug(s)?;
                s.clone()
            }
            None => {
                let s = slugify(&self.name);
                if s.is_empty() {
                    return Err(Error::invalid(
                        "slug",
                        "cannot derive a slug from this name; give one (a-z, 0-9, -)",
                    ));
                }
                s
            }
        };
        if let Some(c) = &self.brand_color
            && !is_valid_hex_color(c)
        {
            return Err(Error::invalid("brandColor", "brand colour must be #RRGGBB"));
        }
        if let Some(u) = &self.logo_url {
            validate_url("logoUrl", u)?;
        }
        Ok(slug)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerPatch {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub slack_channel_id: Option<Option<String>>,
    pub brand_color: Option<Option<String>>,
    pub logo_url: Option<Option<String>>,
}

impl CustomerPatch {
    pub fn validate(&self) -> Result<()> {
        if let Some(n) = &self.name
            && n.trim().is_empty()
        {
            return Err(Error::invalid("name", "customer name must not be empty"));
        }
        if let Some(s) = &self.slug {
            validate_slug(s)?;
        }
        if let Some(Some(c)) = &self.brand_color
            && !is_valid_hex_color(c)
        {
            return Err(Error::invalid("brandColor", "brand colour must be #RRGGBB"));
        }
        if let Some(Some(u)) = &self.logo_url {
            validate_url("logoUrl", u)?;
        }
        Ok(())
    }

    pub fn apply_to(&self, c: &mut Customer) {
        if let Some(v) = &self.name {
            c.name = v.trim().to_string();
        }
        if let Some(v) = &self.slug {
            c.slug = v.clone();
        }
        if let Some(v) = &self.slack_channel_id {
            c.slack_channel_id = v.clone();
        }
        if let Some(v) = &self.brand_color {
            c.brand_color = v.clone();
        }
        if let Some(v) = &self.logo_url {
            c.logo_url = v.clone();
        }
    }
}

fn validate_url(field: &str, u: &str) -> Result<()> {
    if !(u.starts_with("https://") || u.starts_with("http://")) || u.len() > 2000 {
        return Err(Error::invalid(field, "must be an http(s) URL"));
    }
    Ok(())
}

/// Slugs are `^[a-z0-9-]+$`, at most 64 characters, not starting or ending with `-`.
pub fn validate_slug(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "slug",
            "slug must be lowercase letters, digits and single dashes (a-z, 0-9, -)",
        ))
    }
}

/// A slug from a display name: lowercase, every run of other characters becomes one `-`.
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
        if out.len() >= 64 {
            break;
        }
    }
    out.trim_end_matches('-').to_string()
}

/// 32 bytes from a CSPRNG seeded by the operating system as 64 lowercase hex characters.
pub fn new_portal_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_rules() {
        assert!(validate_slug("acme-co").is_ok());
        assert!(validate_slug("Acme").is_err());
        assert!(validate_slug("-acme").is_err());
        assert!(validate_slug("").is_err());
        assert!(validate_slug("a_b").is_err());
        assert_eq!(slugify("  Acme, Inc. (EU) "), "acme-inc-eu");
        assert_eq!(slugify("日本"), "");
    }

    #[test]
    fn new_customer_validation_names_fields() {
        let c = NewCustomer {
            name: "Acme".into(),
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap(), "acme");
        let bad = NewCustomer {
            name: "A".into(),
            brand_color: Some("red".into()),
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().field(), Some("brandColor"));
        let no_name = NewCustomer::default();
        assert_eq!(no_name.validate().unwrap_err().field(), Some("name"));
    }

    #[test]
    fn portal_tokens_are_256_bit_hex_and_distinct() {
        let a = new_portal_token();
        let b = new_portal_token();
        assert_eq!(a.len(), 64);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
        assert!(constant_time_eq(a.as_bytes(), a.as_bytes()));
        assert!(!constant_time_eq(a.as_bytes(), b.as_bytes()));
    }
}

/// A person of a customer who reports issues from chat (the original's `dispatch_customer_user`):
/// one per customer and Slack user id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerUser {
    pub id: CustomerUserId,
    pub customer_id: CustomerId,
    pub slack_user_id: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub email: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A reporter as chat tells of them; empty fields are "not told".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewCustomerUser {
    pub slack_user_id: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub email: Option<String>,
}

fn told(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

impl NewCustomerUser {
    pub fn validate(&self) -> Result<()> {
        let id = self.slack_user_id.trim();
        if id.is_empty()
            || id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::invalid(
                "slackUserId",
                "a Slack user id is 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        if told(&self.display_name).is_some_and(|n| n.chars().count() > 200) {
            return Err(Error::invalid(
                "slackDisplayName",
                "a display name is at most 200 characters",
            ));
        }
        if let Some(u) = told(&self.avatar_url) {
            validate_url("slackAvatarUrl", &u)?;
        }
        if let Some(e) = told(&self.email)
            && (e.len() > 320 || !e.contains('@') || e.chars().any(char::is_whitespace))
        {
            return Err(Error::invalid("userEmail", "not an email address"));
        }
        Ok(())
    }

    /// The person as stored after this report: a new one, or `existing` with what this report
    /// tells (names, avatars and emails change; what is not told stays).
    pub fn merge_into(
        &self,
        existing: Option<CustomerUser>,
        customer_id: CustomerId,
        now: Timestamp,
    ) -> CustomerUser {
        match existing {
            Some(mut u) => {
                if let Some(v) = told(&self.display_name) {
                    u.display_name = Some(v);
                }
                if let Some(v) = told(&self.avatar_url) {
                    u.avatar_url = Some(v);
                }
                if let Some(v) = told(&self.email) {
                    u.email = Some(v);
                }
                u.updated_at = now;
                u
            }
            None => CustomerUser {
                id: CustomerUserId::new(),
                customer_id,
                slack_user_id: self.slack_user_id.trim().to_string(),
                display_name: told(&self.display_name),
                avatar_url: told(&self.avatar_url),
                email: told(&self.email),
                created_at: now,
                updated_at: now,
            },
        }
    }
}
