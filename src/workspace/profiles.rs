//! The environments a workspace can run: `[workspace]` (the default) and
//! each `[[profiles]]` entry, with the config hash their containers carry,
//! and who may choose which. Only configured profiles exist: a user picks a
//! name, never an image.

use std::sync::Arc;

use crate::auth::Identity;
use crate::config::{Profile, WorkspaceConfig, DEFAULT_PROFILE};
use crate::workspace::spec::config_hash;

/// One environment.
#[derive(Debug)]
pub struct Choice {
    /// `default` for `[workspace]`.
    pub name: Arc<str>,
    pub description: String,
    /// The permission needed to choose it (admins need none).
    pub permission: Option<String>,
    pub config: Arc<WorkspaceConfig>,
    /// [`config_hash`] of `config` (and of the name, for a profile).
    pub hash: Arc<str>,
}

impl Choice {
    pub fn is_default(&self) -> bool {
        &*self.name == DEFAULT_PROFILE
    }

    /// Whether `who` may choose it.
    pub fn open_to(&self, who: &Identity) -> bool {
        self.permission.as_deref().is_none_or(|p| who.has(p))
    }
}

/// Every environment, the default first.
#[derive(Debug)]
pub struct Profiles {
    all: Vec<Arc<Choice>>,
}

impl Profiles {
    pub fn new(default: WorkspaceConfig, profiles: &[Profile]) -> Profiles {
        let mut all = vec![Arc::new(Choice {
            name: DEFAULT_PROFILE.into(),
            description: "The standard workspace".into(),
            permission: None,
            hash: config_hash(&default, None).into(),
            config: Arc::new(default),
        })];
        all.extend(profiles.iter().map(|p| {
            Arc::new(Choice {
                name: p.name.as_str().into(),
                description: p.description.clone(),
                permission: p.permission.clone(),
                hash: config_hash(&p.workspace, Some(&p.name)).into(),
                config: p.workspace.clone(),
            })
        }));
        Profiles { all }
    }

    /// `[workspace]`'s.
    pub fn default_choice(&self) -> &Arc<Choice> {
        &self.all[0]
    }

    /// The profile named `name`, if configured.
    pub fn find(&self, name: &str) -> Option<&Arc<Choice>> {
        self.all.iter().find(|c| &*c.name == name)
    }

    /// What a stored choice runs: the named profile, or the default when
    /// none was chosen or it is no longer configured.
    pub fn resolve(&self, name: Option<&str>) -> &Arc<Choice> {
        name.and_then(|n| self.find(n)).unwrap_or_else(|| self.default_choice())
    }

    pub fn all(&self) -> &[Arc<Choice>] {
        &self.all
    }
}

impl From<WorkspaceConfig> for Profiles {
    fn from(default: WorkspaceConfig) -> Profiles {
        Profiles::new(default, &[])
    }
}
