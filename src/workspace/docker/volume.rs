//! The user's volume: found, or created with its labels, and never one
//! whose labels name another deployment or another owner.

use std::collections::HashMap;

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use futures_util::StreamExt;

use crate::workspace::runtime::ByteStream;
use crate::workspace::spec::container_name;

use super::{engine, status_of, DockerRuntime};
use crate::workspace::runtime::RuntimeError;
use crate::workspace::spec::{
    ownership, volume_name, Ownership, WorkspaceSpec, DEFAULT_DEPLOYMENT, LABEL_DEPLOYMENT, LABEL_MANAGED,
    LABEL_WORKSPACE,
};

impl DockerRuntime {
    /// The stopped container of `slug` and where its volume is mounted.
    async fn volume_mount(&self, slug: &str) -> Result<(String, String), RuntimeError> {
        self.volume_mount_in(&container_name(&self.deployment, slug), slug)
            .await
    }

    /// The stopped container `container` and where `slug`'s volume is mounted in it.
    async fn volume_mount_in(&self, container: &str, slug: &str) -> Result<(String, String), RuntimeError> {
        let c = self
            .inspect_raw(container)
            .await?
            .ok_or(RuntimeError::NoSuchWorkspace)?;
        if c.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            return Err(RuntimeError::Busy {
                retry_after: std::time::Duration::from_secs(5),
            });
        }
        let volume = volume_name(&self.deployment, slug);
        let path = c
            .mounts
            .unwrap_or_default()
            .into_iter()
            .find(|m| m.name.as_deref() == Some(volume.as_str()))
            .and_then(|m| m.destination)
            .ok_or(RuntimeError::NoSuchWorkspace)?;
        Ok((c.id.unwrap_or_default(), path))
    }

    /// See [`crate::workspace::runtime::Runtime::export_volume`].
    pub(super) async fn export_volume_of(&self, slug: &str) -> Result<ByteStream, RuntimeError> {
        let (id, path) = self.volume_mount(slug).await?;
        self.export_from(id, path).await
    }

    /// `slug`'s volume read through `container` (stopped), which mounts it.
    pub(in crate::workspace) async fn export_through(
        &self,
        container: &str,
        slug: &str,
    ) -> Result<ByteStream, RuntimeError> {
        let (id, path) = self.volume_mount_in(container, slug).await?;
        self.export_from(id, path).await
    }

    async fn export_from(&self, id: String, path: String) -> Result<ByteStream, RuntimeError> {
        let docker = self.client().await?;
        let options = DownloadFromContainerOptions { path };
        let stream = docker
            .download_from_container(&id, Some(options))
            .map(|chunk| chunk.map_err(std::io::Error::other));
        Ok(Box::pin(stream))
    }

    /// See [`crate::workspace::runtime::Runtime::import_volume`].
    pub(super) async fn import_volume_of(&self, slug: &str, tar: ByteStream) -> Result<(), RuntimeError> {
        let (id, path) = self.volume_mount(slug).await?;
        self.import_into(id, path, tar).await
    }

    /// Unpacks `tar` into `slug`'s volume through `container` (stopped).
    pub(in crate::workspace) async fn import_through(
        &self,
        container: &str,
        slug: &str,
        tar: ByteStream,
    ) -> Result<(), RuntimeError> {
        let (id, path) = self.volume_mount_in(container, slug).await?;
        self.import_into(id, path, tar).await
    }

    async fn import_into(&self, id: String, path: String, tar: ByteStream) -> Result<(), RuntimeError> {
        let parent = std::path::Path::new(&path)
            .parent()
            .map_or("/".to_string(), |p| p.display().to_string());
        let docker = self.client().await?;
        let options = UploadToContainerOptions {
            path: parent,
            ..Default::default()
        };
        docker
            .upload_to_container(&id, Some(options), bollard::body_try_stream(tar))
            .await
            .map_err(engine)
    }

    /// See [`crate::workspace::runtime::Runtime::remove_volume`].
    pub(in crate::workspace) async fn remove_volume_of(&self, slug: &str) -> Result<bool, RuntimeError> {
        let docker = self.client().await?;
        let name = volume_name(&self.deployment, slug);
        let volume = match docker.inspect_volume(&name).await {
            Ok(v) => v,
            Err(e) if status_of(&e) == Some(404) => return Ok(false),
            Err(e) => return Err(engine(e)),
        };
        let labels = &volume.labels;
        let deployment_ok = match labels.get(LABEL_DEPLOYMENT) {
            Some(d) => *d == self.deployment,
            None => self.deployment == DEFAULT_DEPLOYMENT,
        };
        let ours = labels.get(LABEL_MANAGED).is_some_and(|v| v == "true")
            && deployment_ok
            && labels.get(LABEL_WORKSPACE).is_some_and(|w| w == slug);
        if !ours {
            tracing::warn!(volume = %name, "not removed: its labels are not this deployment's workspace's");
            return Err(RuntimeError::NameTaken(name));
        }
        match docker
            .remove_volume(&name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(engine(e)),
        }
    }

    /// The volume to mount for `spec`, created (with its labels) if needed;
    /// never one whose labels name another deployment or another owner.
    /// A user's volume from before 64-bit slug hashes is mounted when the
    /// new name has none yet.
    pub(in crate::workspace) async fn volume(&self, spec: &WorkspaceSpec) -> Result<String, RuntimeError> {
        let docker = self.client().await?;
        let check = |name: &str, labels: &HashMap<String, String>| -> Result<(), RuntimeError> {
            match ownership(|k| labels.get(k).cloned(), &spec.deployment, &spec.issuer, &spec.owner) {
                Ownership::Mine => Ok(()),
                Ownership::Other => {
                    tracing::warn!(volume = name, workspace = %spec.slug, "the volume belongs to another account: not mounted");
                    Err(RuntimeError::NotOwner)
                }
                Ownership::Foreign => Err(RuntimeError::NameTaken(name.to_string())),
            }
        };
        let current = spec.volume_name();
        match docker.inspect_volume(&current).await {
            Ok(v) => {
                check(&current, &v.labels)?;
                return Ok(current);
            }
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(engine(e)),
        }
        if let Some(old) = &spec.legacy_volume {
            match docker.inspect_volume(old).await {
                Ok(v) if check(old, &v.labels).is_ok() => {
                    tracing::info!(volume = %old, workspace = %spec.slug, "mounting the workspace's volume from before 64-bit slugs");
                    return Ok(old.clone());
                }
                Ok(_) => {}
                Err(e) if status_of(&e) == Some(404) => {}
                Err(e) => return Err(engine(e)),
            }
        }
        // Creating a volume that exists returns the existing one (another
        // replica was faster): its labels are checked all the same.
        let made = docker
            .create_volume(VolumeCreateRequest {
                name: Some(current.clone()),
                labels: Some(spec.volume_labels().into_iter().collect()),
                ..Default::default()
            })
            .await
            .map_err(engine)?;
        check(&current, &made.labels)?;
        Ok(current)
    }
}
