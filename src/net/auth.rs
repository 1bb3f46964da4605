//! The shared token that lets only discovery change the reporter's view (and,
//! optionally, only the origin read it). Read from `REPORTER_TOKEN` or from a
//! file named by `REPORTER_TOKEN_FILE`, sent as `Authorization: Bearer <token>`,
//! compared in constant time and never logged (its `Debug` is redacted).

use std::path::PathBuf;

/// Shortest token accepted: a guessable token protects nothing.
pub(crate) const MIN_TOKEN_LEN: usize = 16;

/// Where the token comes from; flattened into the configs that need it.
#[derive(Clone, clap::Args)]
pub struct TokenArgs {
    /// Shared token for reports (environment only, so it never shows in `ps`).
    #[arg(
        long = "reporter-token",
        env = "REPORTER_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    pub token: Option<String>,
    /// File holding the shared token (first line).
    #[arg(long = "reporter-token-file", env = "REPORTER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

impl std::fmt::Debug for TokenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenArgs")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .finish()
    }
}

/// A loaded token.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl TokenArgs {
    /// The configured token, if any; a file that cannot be read or a token
    /// that is too short is an error.
    pub fn load(&self) -> Result<Option<Token>, String> {
        let raw = match (&self.token, &self.token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read REPORTER_TOKEN_FILE {}: {e}", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            (None, None) => return Ok(None),
        };
        Token::parse(&raw, "the reporter token").map(Some)
    }
}

impl Token {
    /// A token given as text, trimmed; `what` names it in the error when it
    /// is shorter than [`MIN_TOKEN_LEN`].
    pub fn parse(raw: &str, what: &str) -> Result<Token, String> {
        let token = raw.trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "{what} must be at least {MIN_TOKEN_LEN} characters"
            ));
        }
        Ok(Token(token.to_string()))
    }

    /// The `Authorization` header value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Whether an `Authorization` header carries this token.
    pub fn admits(&self, header: Option<&str>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        constant_time_eq(given.trim().as_bytes(), self.0.as_bytes())
    }
}

/// Compares without returning early, so timing says nothing about the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(token: Option<&str>) -> TokenArgs {
        TokenArgs {
            token: token.map(String::from),
            token_file: None,
        }
    }

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let token = args(Some("0123456789abcdef-secret"))
            .load()
            .expect("valid")
            .expect("set");
        assert!(token.admits(Some("Bearer 0123456789abcdef-secret")));
        assert!(!token.admits(Some("Bearer 0123456789abcdef-secreT")));
        assert!(!token.admits(Some("0123456789abcdef-secret")));
        assert!(!token.admits(Some("Bearer ")));
        assert!(!token.admits(None));
    }

    #[test]
    fn short_tokens_and_missing_files_are_refused() {
        assert!(args(Some("short")).load().is_err());
        let missing = TokenArgs {
            token: None,
            token_file: Some("/nonexistent/token".into()),
        };
        assert!(missing.load().unwrap_err().contains("/nonexistent/token"));
        assert!(args(None).load().expect("ok").is_none());
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let a = args(Some("0123456789abcdef-secret"));
        assert!(!format!("{a:?}").contains("secret"));
        let t = a.load().expect("valid").expect("set");
        assert!(!format!("{t:?}").contains("secret"));
    }
}
