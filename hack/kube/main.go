// Command kube is one multi-call binary of the Kubernetes release kubeha
// deploys: run as (or with a first argument of) kube-apiserver,
// kube-controller-manager, kube-scheduler, kubectl or kubemark, it is that
// program, built from k8s.io/kubernetes unchanged. One binary links the
// shared code once, which halves the build.
//
// kubectl is the one the masters' add-on manager (kube-addons.sh) runs;
// kubemark is the hollow node of Kubernetes' scalability tests (the real
// kubelet code with a fake container runtime), which the emulator runs as
// worker nodes and as each master's kubelet registration.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	_ "time/tzdata" // for timeZone support in CronJob

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubemark "k8s.io/kubernetes/cmd/kubemark/app"
)

var commands = map[string]func() *cobra.Command{
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	"kubemark":                kubemark.NewHollowNodeCommand,
}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if _, ok := commands[name]; !ok && name != "kubectl" && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	if name == "kubectl" {
		runKubectl(args)
		return
	}
	newCommand, ok := commands[name]
	if !ok {
		names := []string{"kubectl"}
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "run as, or with a first argument of: %s\n", strings.Join(names, ", "))
		os.Exit(2)
	}
	cmd := newCommand()
	cmd.SetArgs(args)
	os.Exit(cli.Run(cmd))
}

// runKubectl is cmd/kubectl's main: kubectl reads its own os.Args (its
// plugin handling and .kuberc), so they are set to what it would see.
func runKubectl(args []string) {
	os.Args = append([]string{"kubectl"}, args...)
	logs.GlogSetter(kubectl.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := kubectl.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		kubectlutil.CheckErr(err)
	}
}
