//! Password hashing with bcrypt, as etcd does. The member that receives a
//! UserAdd or UserChangePassword hashes the password before proposing, so
//! the log carries the hash only and every member stores the same one.

/// etcd's default `--bcrypt-cost`.
pub const BCRYPT_COST_DEFAULT: u32 = 10;

#[derive(Debug, thiserror::Error)]
#[error("bcrypt: {0}")]
pub struct PasswordError(#[from] bcrypt::BcryptError);

/// The bcrypt hash of `password` at `cost` (4 to 31).
pub fn hash_password(password: &str, cost: u32) -> Result<String, PasswordError> {
    Ok(bcrypt::hash(password, cost)?)
}

/// Whether `password` matches the stored `hash`; a malformed hash matches
/// nothing.
pub fn password_matches(password: &str, hash: &[u8]) -> bool {
    std::str::from_utf8(hash).is_ok_and(|hash| bcrypt::verify(password, hash).unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_password_matches_and_others_do_not() {
        let hash = hash_password("s3cret", 4).unwrap();
        assert!(password_matches("s3cret", hash.as_bytes()));
        assert!(!password_matches("secret", hash.as_bytes()));
        assert!(!password_matches("s3cret", b"not a hash"));
    }
}
