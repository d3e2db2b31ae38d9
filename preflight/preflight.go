// Package preflight decides, before any GPU time is paid for, whether a
// ComfyDeploy deployment can take a run with the given inputs. It is pure:
// callers fetch the deployment, machine and workflow version and pass them
// in, so the same checks serve a single run (in an activity) and every item
// of a batch (against a cached deployment) without extra API calls.
package preflight

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/durable-comfy/durable-comfy/comfy"
)

// Kinds of rejection. They are the Temporal application error types that
// reach callers, so they are part of the public surface: keep them stable.
const (
	KindDeploymentNotFound     = "DeploymentNotFound"
	KindMachineNotFound        = "MachineNotFound"
	KindMachineNotReady        = "MachineNotReady"
	KindMachineTypeUnsupported = "MachineTypeUnsupported"
	KindMissingCustomNodes     = "MissingCustomNodes"
	KindInvalidInput           = "InvalidInput"
)

// Rejection says why a run must not be submitted and what to do about it.
type Rejection struct {
	Kind    string
	Message string
	// Problems lists each individual finding, one actionable sentence each.
	Problems []string
}

func (r *Rejection) Error() string {
	if len(r.Problems) == 0 {
		return r.Message
	}
	return r.Message + ": " + strings.Join(r.Problems, "; ")
}

// CheckMachine verifies that runs can be queued on m and that it is ready.
func CheckMachine(m *comfy.Machine) error {
	if !m.Type.CanQueue() {
		return &Rejection{
			Kind: KindMachineTypeUnsupported,
			Message: fmt.Sprintf("machine %s (%s) has type %q, which ComfyDeploy's v2 run API cannot drive; "+
				"move the deployment to a comfy-deploy-serverless, runpod-serverless or classic machine", m.Name, m.ID, m.Type),
		}
	}
	switch m.Status {
	case comfy.MachineReady, comfy.MachineRunning:
		return nil
	case comfy.MachineError:
		msg := fmt.Sprintf("machine %s (%s) is in status \"error\"; rebuild it in the ComfyDeploy dashboard before running", m.Name, m.ID)
		if logs := strings.TrimSpace(m.ImportFailedLogs); logs != "" {
			msg += "; custom-node import failures: " + lastLine(logs, 200)
		}
		return &Rejection{Kind: KindMachineNotReady, Message: msg}
	default:
		return &Rejection{
			Kind: KindMachineNotReady,
			Message: fmt.Sprintf("machine %s (%s) is in status %q, not \"ready\"; wait for the build to finish or start the machine, then retry",
				m.Name, m.ID, m.Status),
		}
	}
}

// CheckCustomNodes verifies that every custom node the workflow version
// depends on is installed on the machine, so a run does not fail minutes
// into a paid cold start with "node X does not exist".
func CheckCustomNodes(v *comfy.WorkflowVersion, m *comfy.Machine) error {
	if v == nil || v.Dependencies == nil {
		return nil
	}
	if m.DockerCommandSteps == nil || len(m.DockerCommandSteps.Steps) == 0 {
		// Self-hosted machines (classic, runpod) carry no build steps, so
		// what is installed cannot be known from the API; the run will tell.
		return nil
	}
	var problems []string
	urls := make([]string, 0, len(v.Dependencies.CustomNodes))
	for url := range v.Dependencies.CustomNodes {
		urls = append(urls, url)
	}
	sort.Strings(urls)
	for _, url := range urls {
		if !m.HasCustomNode(url) && !m.HasCustomNodeID(registryID(url)) {
			problems = append(problems, fmt.Sprintf("custom node %s is not installed on machine %s; add it to the machine and rebuild", url, m.Name))
		}
	}
	for _, node := range v.Dependencies.MissingNodes {
		problems = append(problems, fmt.Sprintf("node type %q is provided by no known custom node; install the pack that provides it", node))
	}
	if len(problems) == 0 {
		return nil
	}
	return &Rejection{
		Kind:     KindMissingCustomNodes,
		Message:  fmt.Sprintf("workflow version %d needs custom nodes that machine %s (%s) lacks", v.Version, m.Name, m.ID),
		Problems: problems,
	}
}

// registryID guesses the ComfyUI registry id of a custom-node repository:
// the lower-cased repository name. Machines often install packs through a
// "custom-node-manager" step that names only that id, not the git URL.
func registryID(url string) string {
	return path.Base(comfy.NormalizeGitURL(url))
}

// lastLine returns the last non-empty line of s, cut to max bytes. Import
// failures are Python tracebacks, whose first line ("Traceback (most recent
// call last):") says nothing and whose last line names the failure.
func lastLine(s string, max int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	s = strings.TrimSpace(lines[len(lines)-1])
	if len(s) > max {
		s = s[:max]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "…"
	}
	return s
}
