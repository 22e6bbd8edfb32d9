//! Following the swarm: its service events (scaled up: started; scaled
//! down: stopped; removed: destroyed), which carry only the service's name,
//! and the deaths of task containers on this node (an app that exits),
//! which carry roost's labels.

use std::collections::HashMap;

use bollard::query_parameters::EventsOptions;
use futures_util::stream::StreamExt;

use super::super::docker::engine;
use super::super::runtime::{EventStream, RuntimeError, RuntimeEvent};
use super::super::spec::LABEL_WORKSPACE;
use super::SwarmRuntime;

impl SwarmRuntime {
    /// The swarm's service events (scaled up: started; scaled down:
    /// stopped; removed: destroyed), and the task containers' deaths on
    /// this node (an app that exits).
    pub(super) async fn event_stream(&self) -> Result<EventStream, RuntimeError> {
        {
            let docker = self.docker.client().await?.clone();
            let services = EventsOptions {
                filters: Some(HashMap::from([("type".into(), vec!["service".into()])])),
                ..Default::default()
            };
            let containers = EventsOptions {
                filters: Some(HashMap::from([
                    ("type".into(), vec!["container".into()]),
                    ("label".into(), self.docker.scope().to_vec()),
                    ("event".into(), vec!["die".into()]),
                ])),
                ..Default::default()
            };
            let deployment = self.docker.deployment().to_string();
            let services = docker.events(Some(services)).filter_map(move |msg| {
                let deployment = deployment.clone();
                async move {
                    let msg = match msg {
                        Ok(msg) => msg,
                        Err(e) => return Some(Err(engine(e))),
                    };
                    let attributes = msg.actor?.attributes?;
                    let slug = slug_of(&deployment, attributes.get("name")?)?.to_string();
                    match (
                        msg.action.as_deref()?,
                        attributes.get("replicas.new").map(String::as_str),
                    ) {
                        ("remove", _) => Some(Ok(RuntimeEvent::Destroyed { slug })),
                        ("update", Some("0")) => Some(Ok(RuntimeEvent::Stopped { slug })),
                        ("update" | "create", _) => Some(Ok(RuntimeEvent::Started { slug })),
                        _ => None,
                    }
                }
            });
            let deaths = docker.events(Some(containers)).filter_map(|msg| async move {
                let msg = match msg {
                    Ok(msg) => msg,
                    Err(e) => return Some(Err(engine(e))),
                };
                let slug = msg.actor?.attributes?.get(LABEL_WORKSPACE)?.clone();
                Some(Ok(RuntimeEvent::Stopped { slug }))
            });
            Ok(futures_util::stream::select(services, deaths).boxed())
        }
    }
}

/// The slug in a service event's name `<deployment>-<slug>`.
fn slug_of<'a>(deployment: &str, name: &'a str) -> Option<&'a str> {
    name.strip_prefix(deployment)?
        .strip_prefix('-')
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_give_slugs_of_this_deployment_only() {
        assert_eq!(slug_of("roost", "roost-alice-1f2e"), Some("alice-1f2e"));
        assert_eq!(slug_of("roost", "roost-"), None);
        assert_eq!(slug_of("roost", "other-alice"), None);
        assert_eq!(slug_of("roost", "roostalice"), None);
    }
}
