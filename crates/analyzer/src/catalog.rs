//! The rules' catalog: each rule's stable id and why it exists. Read by the
//! rules engine, by configuration (which validates the ids a config
//! disables) and by policy settings.

/// One rule: its id (the recommendation's `source.rule_id`) and why it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable id, cited by recommendations, verdicts and metrics.
    pub id: &'static str,
    /// One line: why the action fixes the issue.
    pub rationale: &'static str,
}

/// Restart a crash-looping pod.
pub const CRASHLOOP_RESTART: Rule = Rule {
    id: "crashloop-restart",
    rationale: "A pod crash-looping for a reason other than memory often recovers from a fresh start (stale state, lost connection).",
};
/// Rollout-restart a workload most of whose replicas crash-loop.
pub const CRASHLOOP_ROLLOUT: Rule = Rule {
    id: "crashloop-rollout-restart",
    rationale: "When most replicas crash-loop, one rolling restart respects the rollout strategy where pod-by-pod deletes would not.",
};
/// Raise the memory limit of an OOM-killed container.
pub const OOM_RAISE_MEMORY: Rule = Rule {
    id: "oom-raise-memory-limit",
    rationale: "A container killed for exceeding its memory limit keeps dying until the limit is raised; restarts cannot help.",
};
/// Delete a Job that completed long ago.
pub const STALE_JOB_DELETE: Rule = Rule {
    id: "stale-job-delete",
    rationale: "A Job that completed long ago only holds its pods and quota; its outcome is already recorded.",
};
/// Raise an HPA's maxReplicas.
pub const HPA_RAISE_MAX: Rule = Rule {
    id: "hpa-raise-max",
    rationale: "An autoscaler pinned at its maximum with utilisation above target cannot add the capacity the load needs.",
};
/// Cordon a NotReady node.
pub const NODE_NOT_READY_CORDON: Rule = Rule {
    id: "node-not-ready-cordon",
    rationale: "New pods must not be scheduled onto a node that is not ready.",
};
/// Drain a NotReady node.
pub const NODE_NOT_READY_DRAIN: Rule = Rule {
    id: "node-not-ready-drain",
    rationale: "Pods on a node that is not ready are unreachable; evicting them lets their controllers replace them elsewhere.",
};
/// Cordon a NotReady node, then drain it: one plan.
pub const NODE_NOT_READY_CORDON_DRAIN: Rule = Rule {
    id: "node-not-ready-cordon-drain",
    rationale: "A node that is not ready should take no new pods, and its pods are unreachable: cordoning it, then evicting its pods, lets their controllers replace them elsewhere. As one plan, a drain that fails lifts the cordon again, leaving the node as it was for a human.",
};
/// Cordon a node under resource pressure.
pub const NODE_PRESSURE_CORDON: Rule = Rule {
    id: "node-pressure-cordon",
    rationale: "A node under memory, disk or PID pressure should take no new pods until it recovers.",
};
/// Expand a nearly full volume claim.
pub const PVC_EXPAND: Rule = Rule {
    id: "pvc-expand",
    rationale: "A volume that fills up fails its writers; expanding it ahead of time avoids the outage.",
};
/// Report an image that cannot be pulled.
pub const REPORT_IMAGE_PULL: Rule = Rule {
    id: "report-image-pull",
    rationale: "A wrong image reference or missing pull secret is fixed by a person; a restart pulls the same image again.",
};
/// Report a container whose configuration is missing.
pub const REPORT_CONFIG_ERROR: Rule = Rule {
    id: "report-config-error",
    rationale: "A missing ConfigMap, Secret or key is fixed by a person; a restart reads the same configuration.",
};
/// Report a pod that cannot be scheduled.
pub const REPORT_UNSCHEDULABLE: Rule = Rule {
    id: "report-unschedulable",
    rationale: "An unschedulable pod needs capacity or looser constraints; restarting it only reschedules it into the same wall.",
};
/// Delete a workload's evicted pods.
pub const EVICTED_PODS_DELETE: Rule = Rule {
    id: "evicted-pods-delete",
    rationale: "Evicted pods no longer run and their controller has replaced them; left behind they clutter listings and count against the pod quota.",
};
/// Force-delete a pod stuck terminating on a gone or not-ready node.
pub const STUCK_POD_FORCE_DELETE: Rule = Rule {
    id: "stuck-pod-force-delete",
    rationale: "A pod past its grace period whose node is gone or not ready has no kubelet to confirm it stopped; only a force delete lets its controller replace it and frees its name.",
};
/// Add the replica a disruption budget's minimum leaves no room for.
pub const PDB_SCALE_UP: Rule = Rule {
    id: "pdb-scale-up",
    rationale: "A budget whose minAvailable equals a workload's replicas blocks every drain; one more replica lets one pod be disrupted at a time.",
};
/// Resume a CronJob suspended for long, where the policy allows it.
pub const CRONJOB_RESUME: Rule = Rule {
    id: "cronjob-resume",
    rationale: "A CronJob suspended and idle for long has stopped doing its job; where the policy allows resuming, a human decides whether the pause is over.",
};
/// Report a TLS certificate expiring or expired.
pub const REPORT_CERTIFICATE: Rule = Rule {
    id: "report-certificate",
    rationale: "A certificate is renewed by whoever issues it (cert-manager, a CA, a person) and written into its Secret; Nanny never writes Secrets, so it says what expires when and where to renew it.",
};
/// Run a failed Job again.
pub const JOB_RETRIGGER: Rule = Rule {
    id: "job-failed-retrigger",
    rationale: "A Job that failed on something passing (a node lost, a dependency down, a deadline on a slow day) succeeds when run again; whether its work is safe to repeat is a human's call, so only a policy naming RetriggerJob has it proposed.",
};
/// Expand a claim predicted to fill within the horizon.
pub const PVC_PREDICTED_EXPAND: Rule = Rule {
    id: "pvc-predicted-expand",
    rationale: "A claim whose usage rises steadily fills at a time its trend predicts; expanding it before then, sized to hold the trend, avoids the outage instead of answering it.",
};
/// Raise the memory limit of a container predicted to be OOM-killed.
pub const OOM_PREDICTED_RAISE_MEMORY: Rule = Rule {
    id: "oom-predicted-raise-memory-limit",
    rationale: "A working set rising steadily toward its limit is killed when it gets there; a limit sized to the trend buys time without a kill, while the steady rise (a probable leak) is for the owners to fix.",
};
/// Cordon a node whose memory or disk is predicted to run out.
pub const NODE_PREDICTED_CORDON: Rule = Rule {
    id: "node-predicted-cordon",
    rationale: "A node whose working set rises steadily toward its allocatable memory, or whose filesystem fills steadily toward its allocatable ephemeral storage, will evict or OOM-kill pods once it gets there; a cordon keeps new pods off it meanwhile, while a human, who approves it, finds what grows.",
};
/// Raise the maximum of an HPA pinned there for a rising share of each day.
pub const HPA_PREDICTED_RAISE_MAX: Rule = Rule {
    id: "hpa-predicted-raise-max",
    rationale: "An HPA at its maximum for a share of each day that keeps rising will soon be pinned there through every peak; a higher maximum, within the ceiling, gives it room before the next one.",
};
/// Report a container requesting far more than its pods used.
pub const REPORT_RIGHTSIZING: Rule = Rule {
    id: "report-rightsizing",
    rationale: "Requests far above what a workload uses reserve capacity nobody uses and that the cluster pays for; whether a rare peak needs them is its owners' call, so Nanny says what is reclaimable and how.",
};
/// Lower an over-provisioned container's requests.
pub const RIGHTSIZING_LOWER_REQUESTS: Rule = Rule {
    id: "rightsizing-lower-requests",
    rationale: "Requests lowered to what the pods used plus a margin free capacity the cluster pays for; a human approves, since the usage window may miss a rare peak (rules.rightsizing.propose_patch turns the proposal on).",
};
/// Report a workload doing nothing.
pub const REPORT_IDLE: Rule = Rule {
    id: "report-idle",
    rationale: "A workload that used no CPU for days holds its requests for nothing; only its owners know whether it is still needed.",
};
/// Report a CronJob suspended for long.
pub const REPORT_CRONJOB_SUSPENDED: Rule = Rule {
    id: "report-cronjob-suspended",
    rationale: "A suspension may be on purpose; whoever suspended it decides when it ends.",
};
/// Report a pod whose liveness or startup probe keeps failing.
pub const REPORT_PROBE_FAILING: Rule = Rule {
    id: "report-probe-failing",
    rationale: "The kubelet already restarts a container whose liveness or startup probe fails; another restart changes nothing until the probe or the application is fixed.",
};
/// Report a pod whose volumes the kubelet cannot mount.
pub const REPORT_VOLUME_MOUNT: Rule = Rule {
    id: "report-volume-mount",
    rationale: "A volume that cannot be mounted (a missing Secret, ConfigMap or claim, a disk attached elsewhere) holds the pod until a person fixes the reference or the storage; the pod then starts by itself.",
};
/// Report a pod the runtime cannot give a sandbox.
pub const REPORT_SANDBOX: Rule = Rule {
    id: "report-sandbox",
    rationale: "A sandbox the runtime refuses (a RuntimeClass it lacks, a CNI that fails) fails the same way on every try; the node's runtime or network, or the pod's RuntimeClass, needs a person.",
};
/// Report a pod waiting for its scheduling gates.
pub const REPORT_SCHEDULING_GATED: Rule = Rule {
    id: "report-scheduling-gated",
    rationale: "Scheduling gates are removed by the controller that set them (a queue, a quota manager); Nanny does not remove another controller's gate.",
};
/// Report a container restarting before its back-off.
pub const REPORT_RESTARTING: Rule = Rule {
    id: "report-restarting",
    rationale: "A container that exits in error and restarts is crashing before the kubelet backs off; its last exit and logs say why, earlier than a crash loop would.",
};
/// Report a CronJob whose schedule never fires.
pub const REPORT_CRONJOB_INVALID: Rule = Rule {
    id: "report-cronjob-invalid",
    rationale: "A schedule that names no existing time is accepted by the API server and never runs; only a person knows the schedule meant.",
};
/// Report a StatefulSet or DaemonSet short of its pods.
pub const REPORT_WORKLOAD_SHORT: Rule = Rule {
    id: "report-workload-short",
    rationale: "A StatefulSet or DaemonSet short of its pods for long is held by its pods' own failures or by its nodes; what its pods need is in their reports.",
};
/// Roll a stuck rollout back.
pub const ROLLOUT_STUCK_UNDO: Rule = Rule {
    id: "rollout-stuck-undo",
    rationale: "A rollout past its progress deadline while its previous revision served is most often the new revision's fault; rolling back restores service, and a human confirms before every pod is replaced.",
};
/// Report a CronJob that missed a run.
pub const REPORT_CRONJOB_MISSED: Rule = Rule {
    id: "report-cronjob-missed",
    rationale: "A missed run comes from a held concurrency policy, a tight starting deadline or a lagging controller; each is fixed by a person.",
};
/// Report a workload whose ReplicaSet cannot create pods.
pub const REPORT_REPLICA_FAILURE: Rule = Rule {
    id: "report-replica-failure",
    rationale: "Pods refused at creation (a quota, an admission webhook, a missing ServiceAccount) are refused again on every retry until a person fixes the cause.",
};
/// Cordon a node whose network or kernel is failing.
pub const NODE_PROBLEM_CORDON: Rule = Rule {
    id: "node-problem-cordon",
    rationale: "A node without a network, with a deadlocked kernel, a read-only or corrupt filesystem or a restarting runtime fails every pod sent to it; it should take no new ones.",
};
/// Lift a cordon Nanny set once the node is healthy again.
pub const NODE_RECOVERED_UNCORDON: Rule = Rule {
    id: "node-recovered-uncordon",
    rationale: "A cordon Nanny set for a sick node has done its work once the node is healthy for a while; left in place it wastes the node. A cordon a person set is never lifted.",
};
/// Report an init container that keeps failing.
pub const REPORT_INIT_FAILING: Rule = Rule {
    id: "report-init-failing",
    rationale: "An init container that fails holds its pod before any main container runs; what it waits for or does is fixed by a person, and a restart runs it the same way.",
};
/// Report a container the runtime cannot create or start.
pub const REPORT_RUNTIME_ERROR: Rule = Rule {
    id: "report-runtime-error",
    rationale: "A container the runtime refuses (a command or working directory that does not exist, a bad mount) fails the same way on every start; its spec needs fixing.",
};
/// Report a pod stuck terminating.
pub const REPORT_STUCK_TERMINATING: Rule = Rule {
    id: "report-stuck-terminating",
    rationale: "A pod held by a finalizer or by a node that cannot confirm its containers stopped needs someone to know why before it is forced out.",
};
/// Report a claim that stays Pending.
pub const REPORT_PVC_PENDING: Rule = Rule {
    id: "report-pvc-pending",
    rationale: "A claim no volume is provisioned or bound for keeps its pods from starting; the storage class or the claim needs fixing.",
};
/// Report a claim whose volume is gone.
pub const REPORT_PVC_LOST: Rule = Rule {
    id: "report-pvc-lost",
    rationale: "A claim whose volume is gone may have lost its data; only a person can restore or recreate it.",
};
/// Report a namespace stuck terminating.
pub const REPORT_NAMESPACE_TERMINATING: Rule = Rule {
    id: "report-namespace-terminating",
    rationale: "A namespace held by finalizers or an unavailable API keeps its objects and blocks its name; the owner of the finalizer must finish.",
};
/// Report a Deployment below its minimum available replicas.
pub const REPORT_DEPLOYMENT_UNAVAILABLE: Rule = Rule {
    id: "report-deployment-unavailable",
    rationale: "A Deployment below its minimum available replicas is failing its users; the reason is in its pods, which other rules act on when they can.",
};
/// Report a disruption budget that allows no disruption.
pub const REPORT_PDB_BLOCKING: Rule = Rule {
    id: "report-pdb-blocking",
    rationale: "A budget that allows no disruption blocks every drain and eviction of its pods; its numbers or its pods need fixing.",
};
/// Report a Service that selects pods none of which is Ready.
pub const REPORT_SERVICE_NO_ENDPOINTS: Rule = Rule {
    id: "report-service-no-endpoints",
    rationale: "A Service whose pods are all unready refuses every client; the pods' own failures are the cause, and other rules act on them where they can.",
};
/// Report a Service whose selector matches nothing.
pub const REPORT_SERVICE_SELECTS_NOTHING: Rule = Rule {
    id: "report-service-selects-nothing",
    rationale: "A selector no pod or pod template carries is a typo or a stale label; only a person knows which side is right.",
};
/// Report a StatefulSet whose governing Service does not exist.
pub const REPORT_STATEFULSET_SERVICE: Rule = Rule {
    id: "report-statefulset-service",
    rationale: "A StatefulSet's pods get their stable DNS names from its governing Service; creating one is a person's decision about ports and selectors.",
};
/// Report an admission webhook whose Service serves nothing.
pub const REPORT_WEBHOOK_NO_ENDPOINTS: Rule = Rule {
    id: "report-webhook-no-endpoints",
    rationale: "A webhook that cannot be called refuses (or silently skips) every request it covers; bringing its Service back, relaxing its failure policy or removing it are decisions for whoever runs it.",
};
/// Report a NetworkPolicy that selects no pod.
pub const REPORT_NETWORK_POLICY_SELECTS_NOTHING: Rule = Rule {
    id: "report-network-policy-selects-nothing",
    rationale: "A policy selecting no pod enforces nothing, so the isolation it was written for is missing; only its owner knows which labels it meant.",
};
/// Report an Ingress whose Services or class do not exist.
pub const REPORT_INGRESS_MISCONFIGURED: Rule = Rule {
    id: "report-ingress-misconfigured",
    rationale: "An Ingress pointing at Services or a class that do not exist serves errors or nothing; whether the Ingress or the missing objects are wrong is its owner's call.",
};
/// Report a PersistentVolume released for long, or failed.
pub const REPORT_VOLUME: Rule = Rule {
    id: "report-volume",
    rationale: "A released volume may hold the only copy of its data, and a failed reclamation needs the storage behind it checked; keeping, rebinding or deleting either is its owner's call.",
};
/// Report an HPA unable to scale, or scaling on a utilization nothing requests.
pub const REPORT_HPA: Rule = Rule {
    id: "report-hpa",
    rationale: "An HPA that cannot read its metrics or its target, or whose target requests none of the resource it scales on, keeps its replicas whatever the load; the fix is in the metrics pipeline, the HPA or the pod template, all its owner's.",
};

/// Every rule, for documentation and tests.
pub const RULES: &[Rule] = &[
    CRASHLOOP_RESTART,
    CRASHLOOP_ROLLOUT,
    OOM_RAISE_MEMORY,
    STALE_JOB_DELETE,
    HPA_RAISE_MAX,
    NODE_NOT_READY_CORDON,
    NODE_NOT_READY_DRAIN,
    NODE_NOT_READY_CORDON_DRAIN,
    NODE_PRESSURE_CORDON,
    PVC_EXPAND,
    REPORT_IMAGE_PULL,
    REPORT_CONFIG_ERROR,
    REPORT_UNSCHEDULABLE,
    REPORT_RUNTIME_ERROR,
    REPORT_STUCK_TERMINATING,
    REPORT_PVC_PENDING,
    REPORT_PVC_LOST,
    REPORT_NAMESPACE_TERMINATING,
    REPORT_DEPLOYMENT_UNAVAILABLE,
    REPORT_PDB_BLOCKING,
    EVICTED_PODS_DELETE,
    STUCK_POD_FORCE_DELETE,
    PDB_SCALE_UP,
    CRONJOB_RESUME,
    REPORT_CRONJOB_SUSPENDED,
    REPORT_CRONJOB_MISSED,
    REPORT_REPLICA_FAILURE,
    NODE_PROBLEM_CORDON,
    REPORT_INIT_FAILING,
    REPORT_PROBE_FAILING,
    REPORT_VOLUME_MOUNT,
    REPORT_SANDBOX,
    REPORT_SCHEDULING_GATED,
    REPORT_RESTARTING,
    REPORT_CRONJOB_INVALID,
    REPORT_WORKLOAD_SHORT,
    ROLLOUT_STUCK_UNDO,
    NODE_RECOVERED_UNCORDON,
    REPORT_SERVICE_NO_ENDPOINTS,
    REPORT_SERVICE_SELECTS_NOTHING,
    REPORT_STATEFULSET_SERVICE,
    REPORT_WEBHOOK_NO_ENDPOINTS,
    REPORT_NETWORK_POLICY_SELECTS_NOTHING,
    REPORT_INGRESS_MISCONFIGURED,
    REPORT_VOLUME,
    REPORT_HPA,
    JOB_RETRIGGER,
    REPORT_CERTIFICATE,
    PVC_PREDICTED_EXPAND,
    OOM_PREDICTED_RAISE_MEMORY,
    REPORT_RIGHTSIZING,
    REPORT_IDLE,
    RIGHTSIZING_LOWER_REQUESTS,
    NODE_PREDICTED_CORDON,
    HPA_PREDICTED_RAISE_MAX,
];
