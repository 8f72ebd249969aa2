package planner

import (
	"slices"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/state"
)

// FormatVersion is the version of the JSON plan format.
const FormatVersion = "1"

// Change is the kind of change a step makes, with terraform's symbols.
type Change string

// Changes.
const (
	Create Change = "create"
	Update Change = "update"
	Delete Change = "delete"
)

// Symbol is the change's printable symbol.
func (c Change) Symbol() string {
	switch c {
	case Create:
		return "+"
	case Delete:
		return "-"
	}
	return "~"
}

// Action is what a step does. The executor carries out each one; the
// ordering contracts are the dependencies the planner gives each step.
type Action string

// Actions.
const (
	CreateFirewall  Action = "create-firewall"
	UpdateFirewall  Action = "update-firewall"
	DeleteFirewall  Action = "delete-firewall"
	ReserveStaticIP Action = "reserve-static-ip"
	// ReserveAddress reserves a replica's internal address: before the etcd
	// member is added, so that its peer URL can name the address.
	ReserveAddress Action = "reserve-address"
	CreateDisk     Action = "create-disk"
	// AddLearner adds the new replica's etcd member as a learner, before its
	// VM boots; the VM then boots with initial-cluster-state=existing.
	AddLearner Action = "add-etcd-learner"
	// CreateInstance creates a master that boots etcd from its metadata. A
	// bootstrap master (state new) is waited on until its member is healthy.
	CreateInstance Action = "create-instance"
	StartInstance  Action = "start-instance"
	LabelInstance  Action = "label-instance"
	// PromoteMember makes a learner a voter once it is in sync; only one
	// voter change runs at a time.
	PromoteMember     Action = "promote-etcd-member"
	CreateHealthCheck Action = "create-health-check"
	// UpdateHealthCheck points the health check at the masters' health
	// endpoint again (a kubeha before 3990 and /readyz, or a change out of
	// band).
	UpdateHealthCheck Action = "update-health-check"
	CreateTargetPool  Action = "create-target-pool"
	AddToPool         Action = "add-to-target-pool"
	RemoveFromPool    Action = "remove-from-target-pool"
	// DetachStaticIP moves the single master to an ephemeral IP, so that the
	// static IP can go to the forwarding rule.
	DetachStaticIP       Action = "detach-static-ip"
	CreateForwardingRule Action = "create-forwarding-rule"
	DeleteForwardingRule Action = "delete-forwarding-rule"
	// AttachStaticIP puts the static IP on the single master's access config
	// (replacing an ephemeral one).
	AttachStaticIP    Action = "attach-static-ip"
	DeleteTargetPool  Action = "delete-target-pool"
	DeleteHealthCheck Action = "delete-health-check"
	// MoveLeader hands etcd leadership to a healthy voter before the leader
	// is removed.
	MoveLeader Action = "move-etcd-leader"
	// RemoveMember removes an etcd member (after a snapshot); the instance is
	// deleted only after its member is gone.
	RemoveMember Action = "remove-etcd-member"
	// DeleteInstance deletes a master's VM: after its member is removed,
	// or, for a disk move (Step.KeepDisk), keeping its disk and member.
	DeleteInstance Action = "delete-instance"
	// DeleteDisk deletes an etcd data disk, after the executor saved a snapshot.
	DeleteDisk     Action = "delete-disk"
	ReleaseAddress Action = "release-address"
	// RenewCertificates issues a replica new certificates, writes them to
	// its metadata and restarts the VM; the member is down meanwhile, so
	// renewals run one at a time like voter changes.
	RenewCertificates Action = "renew-certificates"
	// SaveSnapshot saves an etcd snapshot in the backups directory: the
	// first step of a destroy, before anything is deleted.
	SaveSnapshot Action = "save-etcd-snapshot"
	// CreateServiceAccount creates the service account kubeha manages for
	// the masters (CLUSTER-master), before the first master is created.
	CreateServiceAccount Action = "create-service-account"
	DeleteServiceAccount Action = "delete-service-account"
	// DeleteSecret deletes the Secret Manager secret of a master's private
	// keys once the master is gone.
	DeleteSecret Action = "delete-secret"
	// DeleteNode deletes a removed master's Node from the Kubernetes API,
	// after its instance is gone (kube-down deletes the masters' Nodes
	// too); a Node of no master is deleted as a leak.
	DeleteNode Action = "delete-node"
	// FormCluster waits until a quorum of the members of a new cluster,
	// all started at once from one static initial cluster, have formed it,
	// then takes the apply lock.
	FormCluster Action = "form-etcd-cluster"
	// UpdateAddons writes a running master's add-ons (kubeha-addons) after
	// spec.addons changed; the master's add-on sync picks them up, and its
	// add-on manager applies them. Nothing restarts.
	UpdateAddons Action = "update-addons"
	// UploadSnapshot puts the snapshot a restore starts from in Cloud
	// Storage, readable by the masters' service account alone.
	UploadSnapshot Action = "upload-etcd-snapshot"
	// StopInstance stops a master before a restore: its kube-apiserver and
	// etcd member stop, so nothing writes to an etcd being restored.
	StopInstance Action = "stop-instance"
	// RestoreMember boots a stopped master again restoring the snapshot:
	// its data directory is set aside, and its member starts in the
	// restored cluster.
	RestoreMember Action = "restore-etcd-member"
	// DeleteRestoreSnapshot deletes a restore's copy of the snapshot in
	// Cloud Storage once every member restored it.
	DeleteRestoreSnapshot Action = "delete-restore-snapshot"
	// DeleteRestoreBucket deletes the Cloud Storage bucket of the cluster's
	// restores, and any object in it, when the cluster is destroyed.
	DeleteRestoreBucket Action = "delete-restore-bucket"
)

// actionInfo is what the planner knows of an action: the change it makes
// to the cluster (+ ~ -), and whether it changes etcd membership or
// leadership (such steps run strictly one at a time, each behind a health
// gate).
type actionInfo struct {
	change Change
	etcd   bool
}

// actions is the table of every action. An action is added here, with its
// handler in the executor's table, its case in the property model
// (planner/property_test.go) and a scenario in planner/testdata;
// TestEveryActionIsComplete fails until all four exist.
var actions = map[Action]actionInfo{
	CreateFirewall:        {change: Create},
	UpdateFirewall:        {change: Update},
	DeleteFirewall:        {change: Delete},
	ReserveStaticIP:       {change: Create},
	ReserveAddress:        {change: Create},
	CreateDisk:            {change: Create},
	AddLearner:            {change: Create, etcd: true},
	CreateInstance:        {change: Create},
	StartInstance:         {change: Update},
	LabelInstance:         {change: Update},
	PromoteMember:         {change: Update, etcd: true},
	CreateHealthCheck:     {change: Create},
	UpdateHealthCheck:     {change: Update},
	CreateTargetPool:      {change: Create},
	AddToPool:             {change: Update},
	RemoveFromPool:        {change: Update},
	DetachStaticIP:        {change: Update},
	CreateForwardingRule:  {change: Create},
	DeleteForwardingRule:  {change: Delete},
	AttachStaticIP:        {change: Update},
	DeleteTargetPool:      {change: Delete},
	DeleteHealthCheck:     {change: Delete},
	MoveLeader:            {change: Update, etcd: true},
	RemoveMember:          {change: Delete, etcd: true},
	DeleteInstance:        {change: Delete},
	DeleteNode:            {change: Delete},
	UpdateAddons:          {change: Update},
	FormCluster:           {change: Create, etcd: true},
	DeleteDisk:            {change: Delete},
	ReleaseAddress:        {change: Delete},
	RenewCertificates:     {change: Update, etcd: true},
	SaveSnapshot:          {change: Update, etcd: true},
	CreateServiceAccount:  {change: Create},
	DeleteServiceAccount:  {change: Delete},
	DeleteSecret:          {change: Delete},
	UploadSnapshot:        {change: Create},
	StopInstance:          {change: Update},
	RestoreMember:         {change: Update},
	DeleteRestoreSnapshot: {change: Delete},
	DeleteRestoreBucket:   {change: Delete},
}

// Actions lists every action, sorted.
func Actions() []Action {
	out := make([]Action, 0, len(actions))
	for a := range actions {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// Known says the action is one this planner makes.
func (a Action) Known() bool {
	_, ok := actions[a]
	return ok
}

// Change is the change the action makes: Create, Update or Delete.
func (a Action) Change() Change { return actions[a].change }

// Etcd says the action changes etcd membership or leadership.
func (a Action) Etcd() bool { return actions[a].etcd }

// Plan is an ordered, quorum-safe set of steps. Its Steps are in an order
// that respects every dependency; steps whose dependencies are done may run
// at once.
type Plan struct {
	FormatVersion string           `json:"formatVersion"`
	Cluster       string           `json:"cluster"`
	Project       string           `json:"project"`
	Region        string           `json:"region"`
	NoChanges     bool             `json:"noChanges"`
	Summary       Summary          `json:"summary"`
	Steps         []*Step          `json:"steps"`
	Warnings      []string         `json:"warnings"`
	Before        state.Membership `json:"before"`
	After         state.Membership `json:"after"`
	// Kubelets are the kubelet downloads of the masters the plan boots,
	// with the digest each checks: set by kubeha plan and apply (the
	// planner does no I/O), absent when the plan boots no master.
	Kubelets []Kubelet `json:"kubelets,omitempty"`
}

// Kubelet is the kubelet a master of a Kubernetes version downloads at
// boot and the SHA-512 it must hash to, pinned in its metadata.
type Kubelet struct {
	Version string `json:"version"`
	URL     string `json:"url"`
	SHA512  string `json:"sha512"`
	// Source is where the digest comes from: spec.kubernetes.kubeletSHA512,
	// kubeha, the emulator, or the URL of the release's kubelet.sha512 it
	// was fetched from.
	Source string `json:"source"`
}

// Summary counts the steps by change.
type Summary struct {
	Create int `json:"create"`
	Update int `json:"update"`
	Delete int `json:"delete"`
}

// Step is one thing to do.
type Step struct {
	ID        string   `json:"id"`
	Action    Action   `json:"action"`
	Change    Change   `json:"change"`
	Target    string   `json:"target"`
	Zone      string   `json:"zone,omitempty"`
	DependsOn []string `json:"dependsOn"`
	// Reason explains the step to a reviewer; it is not used to decide
	// anything during apply.
	Reason string `json:"reason"`
	// Etcd is the membership the step leaves behind.
	Etcd state.Membership `json:"etcd"`
	// Phase groups steps for display: "network", "load balancer",
	// "replica NAME", "cleanup".
	Phase string `json:"phase"`

	// Replica is the master instance the step concerns.
	Replica string `json:"replica,omitempty"`
	// MemberID is the existing etcd member a promote, move or remove acts on
	// (0 for a member this plan adds: the executor knows it by Replica).
	MemberID uint64 `json:"memberID,omitempty"`
	// LeaderTo is the replica that receives leadership in a move.
	LeaderTo string `json:"leaderTo,omitempty"`
	// Instance is what a create-instance step builds.
	Instance *InstanceSpec `json:"instance,omitempty"`
	// Firewall is what a firewall step writes.
	Firewall *FirewallSpec `json:"firewall,omitempty"`
	// Members are the members of the new cluster a form-etcd-cluster
	// waits for.
	Members []string `json:"members,omitempty"`
	// PoolMembers are the replicas a create-target-pool starts with.
	PoolMembers []string `json:"poolMembers,omitempty"`
	// PoolLink is the dangling target-pool entry a remove-from-pool removes
	// when its instance no longer exists.
	PoolLink string `json:"poolLink,omitempty"`
	// FinalSnapshot says a delete-disk step is covered by the destroy's
	// final snapshot (or by the decision to go without one): the executor
	// saves none of its own, as no member is left to give it.
	FinalSnapshot bool `json:"finalSnapshot,omitempty"`
	// Restore is the restore an upload, restore-etcd-member or
	// delete-restore-snapshot step carries out.
	Restore *RestoreSpec `json:"restore,omitempty"`
	// KeepDisk says a delete-instance step deletes the VM for its disk to
	// move to a new one (spec.masters.replaceBy: disk): its etcd member
	// stays in the cluster, down until the create-instance (moveDisk)
	// after it; the executor saves a snapshot first and makes sure the
	// disk is not deleted with the VM.
	KeepDisk bool `json:"keepDisk,omitempty"`
	// Runs is what the masters run once the step is done, on each step
	// that creates or deletes a master of a plan that runs more than one
	// Kubernetes release (an upgrade): each release, its etcd and the
	// masters that run it.
	Runs []Running `json:"runs,omitempty"`
}

// InstanceSpec is a master to create: what it is and what it boots with.
// Its etcd peer URL names its internal address, whose IP the executor reads
// when it runs the step; its certificates are issued then too, so that the
// plan holds no key material.
type InstanceSpec struct {
	Name            string `json:"name"`
	Zone            string `json:"zone"`
	InternalAddress string `json:"internalAddress"`
	Disk            string `json:"disk"`
	StaticIP        bool   `json:"staticIP"` // the static IP on its access config (a single master)
	ClusterState    string `json:"initialClusterState"`
	// InitialCluster names every member of the new cluster a member of a
	// bootstrap of several starts with (state new), itself included; the
	// executor reads their internal addresses. Empty for a member that
	// bootstraps alone or joins.
	InitialCluster []string `json:"initialCluster,omitempty"`
	// StartAfter names the members created with it whose etcd starts
	// first: the VMs boot together, and each etcd starts once those before
	// it serve, as etcd waits on a peer that listens but does not serve yet.
	StartAfter []string        `json:"startAfter,omitempty"`
	Config     metadata.Config `json:"config"`
	// Restore, when set, makes the master boot restoring a snapshot: a
	// master a restore creates again.
	Restore *RestoreSpec `json:"restore,omitempty"`
	// MoveDisk says the master is made again on its etcd data disk (a disk
	// move): its member, a voter of the cluster, restarts with its data
	// and member ID, and the step returns once it is healthy again.
	MoveDisk bool `json:"moveDisk,omitempty"`
}

// FirewallSpec is a firewall rule kubeha manages.
type FirewallSpec struct {
	// purpose says what the rule is for, in step reasons.
	purpose    string
	Name       string   `json:"name"`
	Ports      []string `json:"ports"`
	SourceTags []string `json:"sourceTags,omitempty"`
	Sources    []string `json:"sourceRanges,omitempty"`
	TargetTags []string `json:"targetTags"`
}

// summarize counts the steps by change.
func (p *Plan) summarize() {
	p.Summary = Summary{}
	for _, s := range p.Steps {
		switch s.Change {
		case Create:
			p.Summary.Create++
		case Update:
			p.Summary.Update++
		case Delete:
			p.Summary.Delete++
		}
	}
	p.NoChanges = len(p.Steps) == 0
}

// bootstrapsAlone says the instance starts a new cluster of one member.
func (in *InstanceSpec) bootstrapsAlone() bool {
	return in.ClusterState == metadata.StateNew && len(in.InitialCluster) <= 1
}
