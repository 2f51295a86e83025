//! Limits on what a request may carry that more than one service enforces: a shipping address is
//! entered at the user service (an address book entry) and again in an order, and both answer a
//! longer field with the same 422.

/// `line1` and `line2`, in characters.
pub const MAXIMUM_ADDRESS_LINE_LENGTH: usize = 200;
/// `city`, `state` and `country`, in characters.
pub const MAXIMUM_ADDRESS_FIELD_LENGTH: usize = 100;
pub const MAXIMUM_POSTAL_CODE_LENGTH: usize = 20;

/// The most items a page may skip: MongoDB counts a skip in a signed 64-bit integer, so a larger
/// one would be its error (a 500) instead of the caller's (a 422).
pub const MAXIMUM_SKIP: u64 = i64::MAX as u64;
