//! Where a token travels: the AUTHORIZATION TOKEN option or parameter, or `?jwt=`.

use banyan_moq::message::Token;
use url::Url;

use super::AuthError;

/// The `jwt` query parameter of a session URL (the browser fallback), if present and non-empty.
pub fn token_from_url(url: &Url) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == "jwt")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// The JWT carried by AUTHORIZATION TOKEN values: the first USE_VALUE or REGISTER token's
/// value as UTF-8 text. `None` when no token carries a value inline (none at all, or only
/// USE_ALIAS/DELETE: aliases are resolved by the session, not here); `Some(Err(Malformed))`
/// when the value is not UTF-8.
pub fn jwt_from_tokens(tokens: &[Token]) -> Option<Result<String, AuthError>> {
    tokens.iter().find_map(|token| match token {
        Token::UseValue { token_value, .. } | Token::Register { token_value, .. } => Some(
            std::str::from_utf8(token_value)
                .map(|s| s.trim().to_owned())
                .map_err(|_| AuthError::Malformed),
        ),
        Token::UseAlias { .. } | Token::Delete { .. } => None,
    })
}
