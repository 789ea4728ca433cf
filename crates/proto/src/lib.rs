//! The `nanny.v1` gRPC contract: messages, clients and servers generated from
//! `proto/nanny/v1/*.proto`, plus the encoded descriptor set for reflection.
//!
//! Evolution rules live in `proto/README.md`: additive only within v1.

/// Generated code for package `nanny.v1`.
pub mod v1 {
    #![allow(missing_debug_implementations, clippy::all, clippy::pedantic)]
    tonic::include_proto!("nanny.v1");
}

pub mod kinds;
pub mod vocabulary;

#[cfg(feature = "json")]
pub mod json;

/// The encoded `FileDescriptorSet` of every `nanny.v1` file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/nanny_descriptor.bin"));

/// Fully qualified gRPC service names, as health checks and grpcurl spell them.
pub mod service_names {
    /// `nanny.v1.Collector`.
    pub const COLLECTOR: &str = "nanny.v1.Collector";
    /// `nanny.v1.Analyzer`.
    pub const ANALYZER: &str = "nanny.v1.Analyzer";
    /// `nanny.v1.SafetyGate`.
    pub const SAFETY_GATE: &str = "nanny.v1.SafetyGate";
    /// `nanny.v1.Remediator`.
    pub const REMEDIATOR: &str = "nanny.v1.Remediator";
}

#[cfg(test)]
mod tests {
    use super::v1::{Action, Decision, action};
    use prost::Message;

    #[test]
    fn unknown_decision_value_is_not_a_known_decision() {
        // A newer gate may add decisions; an older caller must not read them as approval.
        assert!(Decision::try_from(99).is_err());
        assert_eq!(Decision::try_from(0), Ok(Decision::Unspecified));
    }

    #[test]
    fn unknown_action_arm_decodes_as_no_action() {
        // Field 99 stands in for an action arm added by a newer peer during a canary.
        let mut bytes = Vec::new();
        prost::encoding::message::encode(99, &super::v1::RestartPod {}, &mut bytes);
        let decoded = Action::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.kind, None);
        let known = Action {
            kind: Some(action::Kind::RestartPod(super::v1::RestartPod {})),
        };
        assert!(
            Action::decode(known.encode_to_vec().as_slice())
                .unwrap()
                .kind
                .is_some()
        );
    }

    #[test]
    fn descriptor_set_describes_every_service() {
        let fds = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let services: Vec<String> = fds
            .file
            .iter()
            .flat_map(|f| {
                f.service
                    .iter()
                    .map(move |s| format!("{}.{}", f.package(), s.name()))
            })
            .collect();
        for name in [
            super::service_names::COLLECTOR,
            super::service_names::ANALYZER,
            super::service_names::SAFETY_GATE,
            super::service_names::REMEDIATOR,
        ] {
            assert!(
                services.iter().any(|s| s == name),
                "{name} missing from {services:?}"
            );
        }
    }
}
