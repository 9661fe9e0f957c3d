// kube-controller-manager for the operator tests, built as upstream's
// cmd/kube-controller-manager does. Tests start it with only the controllers
// they need (garbage collection, namespace deletion, service accounts);
// workloads stay with the tests, which play Deployment/StatefulSet/kubelet.
package main

import (
	"os"
	_ "time/tzdata" // CronJob time zones

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // --logging-format=json
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // kubernetes_build_info
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
