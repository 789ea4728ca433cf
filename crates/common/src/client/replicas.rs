//! The replicas of a peer service, for work that must go to one replica
//! chosen by a key: each key has an owner, found by rendezvous (highest
//! random weight) hashing, so every caller that knows the same replicas
//! picks the same one, and a replica that joins or leaves moves only the
//! keys it gains or had.
//!
//! The analyzer's model questions are routed this way, by incident
//! fingerprint: an incident is asked about on one replica, whose queue
//! joins and caches it, never on two.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock, Weak},
    time::Duration,
};

use sha2::{Digest as _, Sha256};

use super::{RESOLVE_INTERVAL, Resolver, TracedChannel, channel, endpoint};
use crate::{Error, tls::ClientTls};

/// Channels to a peer's replicas by member name: a configured URL, or the
/// `ip:port` a host name resolved to.
type Members = BTreeMap<String, TracedChannel>;

/// The known replicas of one peer service.
#[derive(Debug, Clone)]
pub struct Replicas {
    members: Arc<RwLock<Members>>,
}

impl Replicas {
    /// The replicas at `urls` when the list is not empty (processes outside
    /// Kubernetes); else every address `url`'s host name resolves to,
    /// looked up again every 10 s (a headless Service lists each ready
    /// pod); else `url` alone (an IP address or `localhost`). Must be
    /// called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] for `key` when a URL is not a valid endpoint.
    pub fn new(
        key: &str,
        url: &str,
        urls: &[String],
        timeout: Duration,
        tls: Option<&ClientTls>,
    ) -> Result<Self, Error> {
        let members = Arc::new(RwLock::new(Members::new()));
        let replicas = Self {
            members: members.clone(),
        };
        if !urls.is_empty() {
            let fixed = urls
                .iter()
                .map(|u| Ok((u.clone(), channel(key, u, timeout, tls)?)))
                .collect::<Result<Members, Error>>()?;
            *write(&members) = fixed;
            return Ok(replicas);
        }
        let uri = endpoint(key, url, timeout, tls)?.uri().clone();
        let Some(resolver) = Resolver::for_url(key, &uri) else {
            write(&members).insert(url.to_owned(), channel(key, url, timeout, tls)?);
            return Ok(replicas);
        };
        tokio::spawn(follow(
            resolver,
            Arc::downgrade(&members),
            key.to_owned(),
            timeout,
            tls.cloned(),
        ));
        Ok(replicas)
    }

    /// How many replicas are known now.
    pub fn len(&self) -> usize {
        read(&self.members).len()
    }

    /// Whether no replica is known (yet).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `keys` grouped by the replica that owns each, with its name and
    /// channel; empty while no replica is known.
    pub fn route(&self, keys: &[String]) -> Vec<Route> {
        let members = read(&self.members);
        let mut routes: BTreeMap<&str, Route> = BTreeMap::new();
        for key in keys {
            let Some(owner) = owner(key, members.keys().map(String::as_str)) else {
                break;
            };
            routes
                .entry(owner)
                .or_insert_with(|| Route {
                    replica: owner.to_owned(),
                    channel: members[owner].clone(),
                    keys: Vec::new(),
                })
                .keys
                .push(key.clone());
        }
        routes.into_values().collect()
    }
}

/// The keys one replica owns.
#[derive(Debug, Clone)]
pub struct Route {
    /// The replica's member name.
    pub replica: String,
    /// Its channel.
    pub channel: TracedChannel,
    /// The keys it owns, in the order given.
    pub keys: Vec<String>,
}

/// The member with the highest weight for `key`: the first 8 bytes of
/// SHA-256 over the key and the member name (stable across processes and
/// builds, unlike std's hasher).
fn owner<'a>(key: &str, members: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    members.max_by_key(|member| {
        let digest = Sha256::new()
            .chain_update(key.as_bytes())
            .chain_update([0])
            .chain_update(member.as_bytes())
            .finalize();
        let mut weight = [0u8; 8];
        weight.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(weight), *member)
    })
}

/// Keeps `members` to what the resolver finds, until nobody holds them.
async fn follow(
    mut resolver: Resolver,
    members: Weak<RwLock<Members>>,
    key: String,
    timeout: Duration,
    tls: Option<ClientTls>,
) {
    loop {
        let (gone, new) = resolver.resolve().await;
        let Some(held) = members.upgrade() else {
            return;
        };
        // Channels are built before the lock is taken: none is held across
        // an await.
        let added: Vec<(String, TracedChannel)> = new
            .into_iter()
            .filter_map(|address| {
                match channel(&key, &resolver.url_of(address), timeout, tls.as_ref()) {
                    Ok(channel) => Some((address.to_string(), channel)),
                    Err(error) => {
                        tracing::warn!(%error, "Cannot use a resolved address.");
                        None
                    }
                }
            })
            .collect();
        {
            let mut current = write(&held);
            for address in gone {
                current.remove(&address.to_string());
            }
            current.extend(added);
        }
        drop(held);
        tokio::time::sleep(RESOLVE_INTERVAL).await;
    }
}

/// The members, also from a lock a panicking writer left: the map itself
/// is always whole (every write is one insert or remove).
fn read(members: &RwLock<Members>) -> std::sync::RwLockReadGuard<'_, Members> {
    members
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(members: &RwLock<Members>) -> std::sync::RwLockWriteGuard<'_, Members> {
    members
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(keys: &[String], members: &[&str]) -> BTreeMap<String, String> {
        keys.iter()
            .map(|k| {
                (
                    k.clone(),
                    owner(k, members.iter().copied()).unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn each_key_has_one_owner_and_a_leaving_replica_moves_only_its_own() {
        let keys: Vec<String> = (0..200).map(|n| format!("inc-{n:016x}")).collect();
        let three = owners(
            &keys,
            &["10.0.0.1:50052", "10.0.0.2:50052", "10.0.0.3:50052"],
        );
        // The same members in another order: the same owners.
        assert_eq!(
            three,
            owners(
                &keys,
                &["10.0.0.3:50052", "10.0.0.1:50052", "10.0.0.2:50052"]
            )
        );
        // Spread: every replica owns a fair share.
        for member in ["10.0.0.1:50052", "10.0.0.2:50052", "10.0.0.3:50052"] {
            let owned = three.values().filter(|o| *o == member).count();
            assert!((40..=95).contains(&owned), "{member} owns {owned} of 200");
        }
        // One leaves: only its keys move.
        let two = owners(&keys, &["10.0.0.1:50052", "10.0.0.2:50052"]);
        for key in &keys {
            if three[key] != "10.0.0.3:50052" {
                assert_eq!(two[key], three[key], "{key} moved");
            }
        }
        assert_eq!(owner("inc-1", std::iter::empty()), None);
    }

    #[tokio::test]
    async fn a_fixed_list_routes_each_key_to_one_replica() {
        let urls = [
            "http://127.0.0.1:1".to_owned(),
            "http://127.0.0.1:2".to_owned(),
        ];
        let replicas = Replicas::new(
            "peers.analyzer",
            "http://127.0.0.1:1",
            &urls,
            Duration::from_secs(1),
            None,
        )
        .unwrap();
        assert_eq!(replicas.len(), 2);
        let keys: Vec<String> = (0..20).map(|n| format!("inc-{n}")).collect();
        let routes = replicas.route(&keys);
        let mut routed: Vec<String> = routes.iter().flat_map(|r| r.keys.clone()).collect();
        routed.sort();
        let mut all = keys.clone();
        all.sort();
        assert_eq!(routed, all, "every key once");
        // Asked again: the same owners.
        let again = replicas.route(&keys);
        let by_replica = |routes: &[Route]| {
            routes
                .iter()
                .map(|r| (r.replica.clone(), r.keys.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(by_replica(&routes), by_replica(&again));

        // One URL and no list: that replica alone.
        let one = Replicas::new(
            "peers.analyzer",
            "http://127.0.0.1:1",
            &[],
            Duration::from_secs(1),
            None,
        )
        .unwrap();
        assert_eq!(one.route(&keys).len(), 1);
    }
}
