//! The demo fault controls: `POST /api/faults/<name>/<mode>` checked (on,
//! token, offered mode, known fault proxy) and relayed to the fault proxy's
//! control API, then recorded in the timeline.

use warp::http::StatusCode;
use warp::reply::Response;

use super::config::{DemoFault, CONSOLE_MODES};
use super::view::{remember, TimelineEntry};
use super::{lock, now_text, Console, FAULT_TIMEOUT};
use crate::service::http::{self, json_error, json_ok};

impl Console {
    /// `POST /api/faults/<name>/<mode>`: checks, then switches the fault proxy.
    pub(super) async fn inject(
        &self,
        name: &str,
        mode: &str,
        authorization: Option<String>,
    ) -> Response {
        let Some(token) = self
            .config
            .fault_token
            .as_ref()
            .filter(|_| self.faults_enabled())
        else {
            return json_error(
                StatusCode::NOT_FOUND,
                "fault controls are off (set CONSOLE_FAULTS and CONSOLE_FAULT_TOKEN to enable them)",
            );
        };
        if !token.admits(authorization.as_deref()) {
            log::warn!("Console: fault request refused (missing or wrong token)");
            return json_error(StatusCode::UNAUTHORIZED, "missing or wrong fault token");
        }
        let allowed = CONSOLE_MODES.map(DemoFault::name);
        let Some(mode) = CONSOLE_MODES.into_iter().find(|m| m.name() == mode) else {
            let shown: String = mode.chars().take(32).collect();
            return json_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "mode '{shown}' is not offered by the console (one of: {})",
                    allowed.join(", ")
                ),
            );
        };
        let Some(target) = self.config.faults.0.iter().find(|t| t.name == name) else {
            let shown: String = name.chars().take(32).collect();
            return json_error(
                StatusCode::NOT_FOUND,
                format!("no fault control named '{shown}'"),
            );
        };
        let url = format!("{}/_fault/{}", target.control, mode.name());
        let sent = self
            .client
            .put(&url)
            .timeout(FAULT_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("unreachable: {}", http::root_cause(&e)))
            .and_then(|res| {
                if res.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("answered {}", res.status()))
                }
            });
        if let Err(e) = sent {
            log::warn!("Console: cannot set fault '{mode}' on {name} ({url}): {e}");
            return json_error(StatusCode::BAD_GATEWAY, format!("fault proxy '{name}' {e}"));
        }
        log::warn!("Console: fault '{mode}' set on {name} ({})", target.control);
        remember(
            &mut lock(&self.timeline),
            TimelineEntry::Fault {
                at: now_text(),
                name: target.name.clone(),
                control: target.control.clone(),
                mode: mode.name().to_string(),
            },
        );
        self.refresh_now.notify_one();
        json_ok(&serde_json::json!({
            "name": target.name,
            "control": target.control,
            "mode": mode.name(),
        }))
    }
}
