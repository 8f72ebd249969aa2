package planner

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/kubeha/kubeha/spec"
)

// Selection: which master goes, in which zone a new one goes, and its name.

// pickVictim chooses the next master to remove in a scale-down, in this
// priority order:
//  1. an unhealthy master;
//  2. a master in a zone that is no longer in spec.masters.zones;
//  3. a master in the most crowded zone (the most masters above the spec's spread);
//  4. a master whose settings differ from the spec (it would be replaced:
//     a drifted master kept by a scale-down to two voters could not be
//     moved by disk);
//  5. not the etcd leader (it would need a MoveLeader first);
//  6. the last name, so the choice is deterministic.
func (b *builder) pickVictim(chosen []*replica) *replica {
	desired := map[string]int{}
	for _, zc := range b.spec.Spec.Spread() {
		desired[zc.Zone] = zc.Count
	}
	count := map[string]int{}
	for _, r := range without(b.kept(), chosen) {
		count[r.zone]++
	}
	key := func(r *replica) []int {
		return []int{boolInt(r.healthy), boolInt(inZones(r.zone, b.spec.Spec.Masters.Zones)), -(count[r.zone] - desired[r.zone]),
			boolInt(r.driftReason == ""), boolInt(b.leader == r.name)}
	}
	var best *replica
	for _, r := range without(b.kept(), chosen) {
		if best == nil {
			best = r
			continue
		}
		kr, kb := key(r), key(best)
		less, decided := false, false
		for i := range kr {
			if kr[i] != kb[i] {
				less, decided = kr[i] < kb[i], true
				break
			}
		}
		if !decided {
			less = r.name > best.name
		}
		if less {
			best = r
		}
	}
	return best
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

// zoneFor is the zone of a new master: prefer, when it is still one of the
// spec's zones (a replacement stays in its zone); otherwise the zone
// furthest below the spec's spread, the earliest in spec order on a tie.
func (b *builder) zoneFor(prefer string) string {
	if prefer != "" && inZones(prefer, b.spec.Spec.Masters.Zones) {
		return prefer
	}
	count := map[string]int{}
	for _, r := range b.kept() {
		count[r.zone]++
	}
	best, bestDeficit := b.spec.Spec.Masters.Zones[0], -1<<30
	for _, zc := range b.spec.Spec.Spread() {
		if d := zc.Count - count[zc.Zone]; d > bestDeficit {
			best, bestDeficit = zc.Zone, d
		}
	}
	return best
}

// newName derives a replica name that no instance, disk, address or member
// uses or used in this plan: <name>-master for the first master of a new
// cluster, else <name>-master-xyz with xyz derived from the cluster, the
// zone and the current members, so that it is deterministic yet differs
// from the names of earlier generations.
func (b *builder) newName(zone string, first bool) string {
	cluster := b.spec.Metadata.Name
	if first && !b.used[spec.MasterName(cluster)] {
		b.used[spec.MasterName(cluster)] = true
		return spec.MasterName(cluster)
	}
	var ids []string
	for _, m := range b.obs.Etcd.Members {
		ids = append(ids, strconv.FormatUint(m.ID, 16))
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	for i := 0; ; i++ {
		sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%s/%s/%d", cluster, zone, strings.Join(ids, ","), i)))
		v := binary.BigEndian.Uint64(sum[:8])
		var suffix [spec.ReplicaSuffixLength]byte
		for j := range suffix {
			suffix[j] = alphabet[v%uint64(len(alphabet))]
			v /= uint64(len(alphabet))
		}
		name := spec.ReplicaName(cluster, string(suffix[:]))
		if !b.used[name] {
			b.used[name] = true
			return name
		}
	}
}

func without(list, drop []*replica) []*replica {
	var out []*replica
	for _, r := range list {
		keep := true
		for _, d := range drop {
			keep = keep && d != r
		}
		if keep {
			out = append(out, r)
		}
	}
	return out
}

func inZones(z string, zones []string) bool {
	for _, x := range zones {
		if x == z {
			return true
		}
	}
	return false
}
