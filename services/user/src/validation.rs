//! Validation rules for what users send: emails, passwords, names, phones and address fields.
//!
//! Each rule pushes a `FieldError` (FastAPI's `{"loc": ["body", field], "msg", "type"}`) onto a
//! list, so that one 422 reports every problem of a request at once rather than the first. Text
//! fields are trimmed before they are checked and stored: " Example " is "Example".
//!
//! Serde has already checked presence and types by the time these run; this module checks
//! content.

use common::ApiError;
use common::error::FieldError;

pub const MAXIMUM_EMAIL_LENGTH: usize = 254;
pub const MINIMUM_PASSWORD_LENGTH: usize = 8;
/// Generous for passphrases, small enough that nobody can make us hash a megabyte.
pub const MAXIMUM_PASSWORD_LENGTH: usize = 128;
pub const MAXIMUM_NAME_LENGTH: usize = 100;
pub const MAXIMUM_PHONE_LENGTH: usize = 32;
pub use common::limits::{MAXIMUM_ADDRESS_FIELD_LENGTH, MAXIMUM_ADDRESS_LINE_LENGTH, MAXIMUM_POSTAL_CODE_LENGTH};

/// Collects the field errors of one request.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new("body", field, message));
    }

    /// A plausible email address, trimmed: one `@`, a non-empty local part of at most 64
    /// characters, a domain with a dot and no empty labels, no whitespace. Deliberately not the
    /// full RFC 5322 grammar: deliverability is proven by mail, not by a parser.
    pub fn email(&mut self, field: &str, value: &str) -> String {
        let email = value.trim().to_owned();
        if let Some(reason) = email_problem(&email) {
            self.fail(field, reason);
        }
        email
    }

    /// At least 8 characters with at least one letter and one digit; at most 128 characters.
    pub fn new_password(&mut self, field: &str, value: &str) {
        let length = value.chars().count();
        if length < MINIMUM_PASSWORD_LENGTH {
            self.fail(field, format!("Password must be at least {MINIMUM_PASSWORD_LENGTH} characters long"));
        } else if length > MAXIMUM_PASSWORD_LENGTH {
            self.fail(field, format!("Password must be at most {MAXIMUM_PASSWORD_LENGTH} characters long"));
        }
        if !value.chars().any(char::is_alphabetic) {
            self.fail(field, "Password must contain at least one letter");
        }
        if !value.chars().any(|character| character.is_ascii_digit()) {
            self.fail(field, "Password must contain at least one digit");
        }
    }

    /// Non-empty after trimming and at most `maximum` characters; returns the trimmed text.
    pub fn required_text(&mut self, field: &str, value: &str, maximum: usize) -> String {
        let text = value.trim().to_owned();
        if text.is_empty() {
            self.fail(field, "Field must not be empty");
        } else if text.chars().count() > maximum {
            self.fail(field, format!("Field must be at most {maximum} characters long"));
        } else if text.chars().any(char::is_control) {
            self.fail(field, "Field must not contain control characters");
        }
        text
    }

    /// An optional text: absent, null or blank all mean "none"; otherwise as `required_text`.
    pub fn optional_text(&mut self, field: &str, value: Option<&str>, maximum: usize) -> Option<String> {
        match value.map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(self.required_text(field, text, maximum)),
        }
    }

    /// An optional phone number: digits with the usual separators (`+`, spaces, `-`, `.`, `(`,
    /// `)`), at least one digit, at most 32 characters. Blank means none.
    pub fn optional_phone(&mut self, field: &str, value: Option<&str>) -> Option<String> {
        let phone = self.optional_text(field, value, MAXIMUM_PHONE_LENGTH)?;
        let allowed = |character: char| character.is_ascii_digit() || " +-.()".contains(character);
        if !phone.chars().all(allowed) || !phone.chars().any(|character| character.is_ascii_digit()) {
            self.fail(field, "Phone number may contain only digits, spaces and + - . ( )");
        }
        Some(phone)
    }

    /// `Ok(())` when every rule held, else the 422 listing every failure.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() { Ok(()) } else { Err(ApiError::Validation(self.errors)) }
    }
}

fn email_problem(email: &str) -> Option<&'static str> {
    if email.is_empty() {
        return Some("Email must not be empty");
    }
    if email.chars().count() > MAXIMUM_EMAIL_LENGTH {
        return Some("Email must be at most 254 characters long");
    }
    if email.chars().any(|character| character.is_whitespace() || character.is_control()) {
        return Some("Email must not contain whitespace");
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Some("Email must contain an @");
    };
    if domain.contains('@') {
        return Some("Email must contain exactly one @");
    }
    if local.is_empty() || local.chars().count() > 64 {
        return Some("Email must have 1 to 64 characters before the @");
    }
    if !domain.contains('.') || domain.split('.').any(str::is_empty) {
        return Some("Email must have a domain such as example.com after the @");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(validator: Validator) -> Vec<String> {
        match validator.finish() {
            Ok(()) => Vec::new(),
            Err(ApiError::Validation(errors)) => {
                errors.into_iter().map(|error| format!("{}: {}", error.loc[1], error.msg)).collect()
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn the_guides_registration_values_are_valid() {
        let mut validator = Validator::new();
        assert_eq!(validator.email("email", " customer@example.com "), "customer@example.com");
        validator.new_password("password", "Password123");
        assert_eq!(validator.required_text("first_name", "Example", MAXIMUM_NAME_LENGTH), "Example");
        assert_eq!(validator.optional_phone("phone", Some("555-123-4567")).as_deref(), Some("555-123-4567"));
        assert_eq!(messages(validator), Vec::<String>::new());
    }

    #[test]
    fn malformed_emails_are_refused() {
        for email in [
            "",
            "customer",
            "customer@",
            "@example.com",
            "customer@example",
            "a b@example.com",
            "a@b@example.com",
            "a@example..com",
        ] {
            let mut validator = Validator::new();
            validator.email("email", email);
            assert_eq!(messages(validator).len(), 1, "{email:?} should be refused");
        }
    }

    #[test]
    fn a_password_needs_eight_characters_a_letter_and_a_digit() {
        let cases = [
            ("Pass123", vec!["password: Password must be at least 8 characters long"]),
            ("Password", vec!["password: Password must contain at least one digit"]),
            ("12345678", vec!["password: Password must contain at least one letter"]),
            ("Password123", vec![]),
        ];
        for (password, expected) in cases {
            let mut validator = Validator::new();
            validator.new_password("password", password);
            assert_eq!(messages(validator), expected, "{password:?}");
        }
        let mut validator = Validator::new();
        validator.new_password("password", &format!("a1{}", "x".repeat(MAXIMUM_PASSWORD_LENGTH)));
        assert_eq!(messages(validator), vec!["password: Password must be at most 128 characters long"]);
    }

    #[test]
    fn every_failure_of_a_request_is_reported_at_once() {
        let mut validator = Validator::new();
        validator.email("email", "nope");
        validator.new_password("password", "short");
        validator.required_text("first_name", "   ", MAXIMUM_NAME_LENGTH);
        let reported = messages(validator);
        assert_eq!(reported.len(), 4, "{reported:?}");
        assert!(reported.iter().any(|message| message.starts_with("first_name:")));
    }

    #[test]
    fn names_are_trimmed_non_empty_and_bounded() {
        let mut validator = Validator::new();
        assert_eq!(validator.required_text("last_name", "  Customer ", MAXIMUM_NAME_LENGTH), "Customer");
        validator.required_text("first_name", &"x".repeat(MAXIMUM_NAME_LENGTH + 1), MAXIMUM_NAME_LENGTH);
        validator.required_text("city", "Line\u{0}break", MAXIMUM_ADDRESS_FIELD_LENGTH);
        assert_eq!(
            messages(validator),
            vec!["first_name: Field must be at most 100 characters long", "city: Field must not contain control characters"]
        );
    }

    #[test]
    fn a_blank_optional_field_means_none_and_a_bad_phone_is_refused() {
        let mut validator = Validator::new();
        assert_eq!(validator.optional_phone("phone", Some("  ")), None);
        assert_eq!(validator.optional_phone("phone", None), None);
        assert_eq!(validator.optional_text("line2", Some(""), MAXIMUM_ADDRESS_LINE_LENGTH), None);
        assert_eq!(messages(validator), Vec::<String>::new());

        let mut validator = Validator::new();
        validator.optional_phone("phone", Some("call me maybe"));
        validator.optional_phone("phone", Some(&"1".repeat(MAXIMUM_PHONE_LENGTH + 1)));
        assert_eq!(messages(validator).len(), 2);
    }
}
