package comfytest

import (
	"fmt"
	"time"
)

// Seeded demo organisation. These ids are stable; other code and tests
// refer to them.
const (
	SeedOrgID  = "org_sim"
	SeedUserID = "user_sim"

	// NoCreditsAPIKey authenticates a user of the same organisation whose
	// GPU credits are exhausted: reads work, run creation gets 403.
	NoCreditsAPIKey = "sim-key-nocredits"

	MachineGPUPoolA      = "ac000000-0000-4000-8000-000000000001" // comfy-deploy-serverless, ready, A10G
	MachineGPUPoolB      = "ac000000-0000-4000-8000-000000000002" // comfy-deploy-serverless, ready, L40S
	MachineStudioClassic = "ac000000-0000-4000-8000-000000000003" // classic, ready (no cancel, no sync/stream)
	MachineGPUBuilding   = "ac000000-0000-4000-8000-000000000004" // comfy-deploy-serverless, building
	MachineGPUBroken     = "ac000000-0000-4000-8000-000000000005" // comfy-deploy-serverless, error
	MachineLegacyModal   = "ac000000-0000-4000-8000-000000000006" // modal-serverless (400 Invalid machine type)

	WorkflowTxt2Img     = "f1000000-0000-4000-8000-000000000001"
	WorkflowUpscale     = "f1000000-0000-4000-8000-000000000002"
	WorkflowImg2Video   = "f1000000-0000-4000-8000-000000000003"
	WorkflowMissingNode = "f1000000-0000-4000-8000-000000000004"
	WorkflowSlowRender  = "f1000000-0000-4000-8000-000000000005"
	VersionTxt2Img      = "7e000000-0000-4000-8000-000000000001"
	VersionUpscale      = "7e000000-0000-4000-8000-000000000002"
	VersionImg2Video    = "7e000000-0000-4000-8000-000000000003"
	VersionMissingNode  = "7e000000-0000-4000-8000-000000000004"
	VersionSlowRender   = "7e000000-0000-4000-8000-000000000005"

	DeploymentTxt2Img          = "de000000-0000-4000-8000-000000000001" // machine 1
	DeploymentUpscale          = "de000000-0000-4000-8000-000000000002" // machine 1
	DeploymentImg2Video        = "de000000-0000-4000-8000-000000000003" // machine 2
	DeploymentTxt2ImgB         = "de000000-0000-4000-8000-000000000004" // machine 2
	DeploymentTxt2ImgClassic   = "de000000-0000-4000-8000-000000000005" // machine 3
	DeploymentOnBuilding       = "de000000-0000-4000-8000-000000000006" // machine 4
	DeploymentOnBroken         = "de000000-0000-4000-8000-000000000007" // machine 5
	DeploymentOnLegacyModal    = "de000000-0000-4000-8000-000000000008" // machine 6
	DeploymentNeedsMissingNode = "de000000-0000-4000-8000-000000000009" // machine 1, missing KJNodes
	DeploymentSlowTimeout      = "de000000-0000-4000-8000-00000000000a" // machine 1, run_timeout 2s, run 10s

	ModelFileSDXL = "d0000000-0000-4000-8000-000000000001"
	ModelFileLora = "d0000000-0000-4000-8000-000000000002"
)

// Custom node repositories used by the seed.
const (
	repoComfyDeploy = "https://github.com/BennyKok/comfyui-deploy"
	repoImpactPack  = "https://github.com/ltdrdata/ComfyUI-Impact-Pack"
	repoVHS         = "https://github.com/Kosinkadink/ComfyUI-VideoHelperSuite"
	repoKJNodes     = "https://github.com/kijai/ComfyUI-KJNodes"

	comfyDeployLocalCommit  = "a3c9f1e6b7d24e0f9c1b8a7d6e5f4c3b2a190817"
	comfyDeployLatestCommit = "98c1aca4e1f04b6d8a2c3e5f7a9b1c3d5e7f9012"
	comfyUICommit           = "6e2b4c1d9f8a7e3b5c2d1f0e9a8b7c6d5e4f3a21"
)

// ---- seeded state types -----------------------------------------------------------

type machine struct {
	ID, Name, Type, Status, GPU string
	ConcurrencyLimit            int
	RunTimeout, IdleTimeout     int
	KeepWarm                    int
	Endpoint                    string
	ImportFailedLogs            string
	Steps                       []map[string]any
	VersionID                   string
	Version                     int
	ComfyUIVersion              string
	BuilderVersion              string
	LocalCommit                 string
	Created, Updated            time.Time
}

type machineVersion struct {
	ID, MachineID        string
	Version              int
	Status, GPU, ComfyUI string
	Created, Updated     time.Time
}

type workflow struct {
	ID, Name, Description string
	SelectedMachineID     string
	Created, Updated      time.Time
}

type workflowVersion struct {
	ID, WorkflowID              string
	Version                     int
	Comment                     string
	MachineID, MachineVersionID string
	Workflow, WorkflowAPI       map[string]any
	Dependencies, Snapshot      map[string]any
	Created, Updated            time.Time
	pipe                        *pipeline
}

type deployment struct {
	ID, Description, Environment string
	WorkflowID, VersionID        string
	MachineID, MachineVersionID  string
	GPU                          string
	ConcurrencyLimit             int
	RunTimeout                   time.Duration
	IdleTimeout, KeepWarm        int
	Created, Updated, Activated  time.Time
	timing                       *Timing
}

type modelFile struct {
	ID, Name, Folder string
	Size             int64
	Created, Updated time.Time
}

// ---- custom nodes -------------------------------------------------------------------

func customNodeStep(id, url, hash, name string) map[string]any {
	return map[string]any{"id": id, "type": "custom-node", "data": map[string]any{
		"url": url, "hash": hash, "install_type": "git-clone", "name": name,
		"pip": []any{}, "files": []any{url},
	}}
}

func standardSteps(deployCommit string) []map[string]any {
	return []map[string]any{
		customNodeStep("cd-1", repoComfyDeploy, deployCommit, "ComfyUI Deploy"),
		customNodeStep("cd-2", repoImpactPack, "1f6c2b0b0c5e4b7a9d8e7f6a5b4c3d2e1f0a9b8c", "ComfyUI Impact Pack"),
		{"id": "cd-3", "type": "custom-node-manager", "data": map[string]any{"node_id": "comfyui-videohelpersuite", "version": "1.5.0"}},
		{"id": "cd-4", "type": "commands", "data": "RUN apt-get install -y ffmpeg"},
	}
}

func dependency(url, hash, name string) map[string]any {
	return map[string]any{"url": url, "hash": hash, "install_type": "git-clone", "pip": []any{}, "files": []any{url}, "name": name}
}

// ---- seeding -----------------------------------------------------------------------

// seedTime is the creation date of the demo organisation. Seeded rows have
// whole-second timestamps, so ORM routes show the seconds-cut quirk on them.
var seedTime = time.Date(2025, 1, 6, 9, 30, 0, 0, time.UTC)

func (s *Server) seed() {
	t := func(days, minutes int) time.Time {
		return seedTime.Add(time.Duration(days)*24*time.Hour + time.Duration(minutes)*time.Minute)
	}
	addMachine := func(m *machine, versions ...*machineVersion) {
		m.Created, m.Updated = t(0, 0), t(3, 17)
		if m.ComfyUIVersion == "" {
			m.ComfyUIVersion = comfyUICommit
		}
		if m.RunTimeout == 0 {
			m.RunTimeout = 300
		}
		if m.IdleTimeout == 0 {
			m.IdleTimeout = 60
		}
		if m.BuilderVersion == "" {
			m.BuilderVersion = "4"
		}
		s.machines[m.ID] = m
		s.machineOrder = append(s.machineOrder, m.ID)
		for i, v := range versions {
			v.MachineID, v.Version = m.ID, i+1
			v.Created = t(i, 5)
			v.Updated = v.Created.Add(4*time.Minute + 12*time.Second + 345678*time.Microsecond)
			if v.GPU == "" {
				v.GPU = m.GPU
			}
			v.ComfyUI = m.ComfyUIVersion
			m.VersionID, m.Version = v.ID, v.Version
		}
		s.machineVersions[m.ID] = versions
	}
	mv := func(n, v int, status string) *machineVersion {
		return &machineVersion{ID: fmt.Sprintf("ad000000-0000-4000-8000-0000000000%d%d", n, v), Status: status}
	}

	addMachine(&machine{ID: MachineGPUPoolA, Name: "gpu-pool-a", Type: "comfy-deploy-serverless", Status: "ready", GPU: "A10G",
		ConcurrencyLimit: 50, Steps: standardSteps(comfyDeployLatestCommit), LocalCommit: comfyDeployLatestCommit},
		mv(1, 1, "ready"), mv(1, 2, "ready"))
	addMachine(&machine{ID: MachineGPUPoolB, Name: "gpu-pool-b", Type: "comfy-deploy-serverless", Status: "ready", GPU: "L40S",
		ConcurrencyLimit: 50, Steps: standardSteps(comfyDeployLocalCommit), LocalCommit: comfyDeployLocalCommit},
		mv(2, 1, "ready"))
	addMachine(&machine{ID: MachineStudioClassic, Name: "studio-classic", Type: "classic", Status: "ready", GPU: "",
		ConcurrencyLimit: 10, Endpoint: "https://studio.example.internal:8188", BuilderVersion: "2"})
	addMachine(&machine{ID: MachineGPUBuilding, Name: "gpu-building", Type: "comfy-deploy-serverless", Status: "building", GPU: "A10G",
		ConcurrencyLimit: 2, Steps: standardSteps(comfyDeployLatestCommit), LocalCommit: comfyDeployLatestCommit},
		mv(4, 1, "ready"), mv(4, 2, "building"))
	addMachine(&machine{ID: MachineGPUBroken, Name: "gpu-broken", Type: "comfy-deploy-serverless", Status: "error", GPU: "T4",
		ConcurrencyLimit: 2, Steps: standardSteps(comfyDeployLatestCommit), LocalCommit: comfyDeployLatestCommit,
		ImportFailedLogs: "Traceback (most recent call last):\n  File \"/comfyui/nodes.py\", line 2004, in load_custom_node\n" +
			"    module_spec.loader.exec_module(module)\nModuleNotFoundError: No module named 'segment_anything'\n" +
			"Cannot import /comfyui/custom_nodes/ComfyUI-Impact-Pack module for custom nodes: No module named 'segment_anything'"},
		mv(5, 1, "error"))
	addMachine(&machine{ID: MachineLegacyModal, Name: "legacy-modal", Type: "modal-serverless", Status: "ready", GPU: "T4",
		ConcurrencyLimit: 2, Endpoint: "https://legacy--comfyui-app.modal.run", BuilderVersion: "2"})

	// Workflows and their versions.
	baseDeps := map[string]any{repoComfyDeploy: dependency(repoComfyDeploy, comfyDeployLatestCommit, "ComfyUI Deploy")}
	withDeps := func(extra ...map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range baseDeps {
			out[k] = v
		}
		for _, e := range extra {
			out[e["url"].(string)] = e
		}
		return out
	}
	addWorkflow := func(id, versionID, name, desc, machineID string, p *pipeline, customNodes map[string]any, missing []string, day int) {
		w := &workflow{ID: id, Name: name, Description: desc, SelectedMachineID: machineID, Created: t(day, 40), Updated: t(day+1, 2)}
		s.workflows[id] = w
		s.workflowOrder = append(s.workflowOrder, id)
		gitNodes := map[string]any{}
		for url, d := range customNodes {
			gitNodes[url] = map[string]any{"hash": d.(map[string]any)["hash"], "disabled": false}
		}
		v := &workflowVersion{
			ID: versionID, WorkflowID: id, Version: 1, Comment: "initial version", MachineID: machineID,
			MachineVersionID: s.machines[machineID].VersionID,
			Workflow:         p.uiWorkflow(), WorkflowAPI: p.workflowAPI(),
			Dependencies: map[string]any{"comfyui": comfyUICommit, "models": map[string]any{}, "missing_nodes": missing,
				"custom_nodes": customNodes, "files": map[string]any{}},
			Snapshot: map[string]any{"comfyui": comfyUICommit, "git_custom_nodes": gitNodes, "file_custom_nodes": []any{}, "pips": map[string]any{}},
			Created:  t(day+1, 2), Updated: t(day+1, 2), pipe: p,
		}
		s.versions[versionID] = v
		s.versionsByWorkflow[id] = append(s.versionsByWorkflow[id], v)
	}
	addWorkflow(WorkflowTxt2Img, VersionTxt2Img, "txt2img", "SDXL text to image with caption", MachineGPUPoolA, txt2imgPipeline(), withDeps(), []string{}, 1)
	addWorkflow(WorkflowUpscale, VersionUpscale, "upscale", "Model-based 2x/4x upscaler", MachineGPUPoolA, upscalePipeline(),
		withDeps(dependency(repoImpactPack, "1f6c2b0b0c5e4b7a9d8e7f6a5b4c3d2e1f0a9b8c", "ComfyUI Impact Pack")), []string{}, 2)
	addWorkflow(WorkflowImg2Video, VersionImg2Video, "img2video", "Image to short animation (VHS)", MachineGPUPoolB, img2videoPipeline(),
		withDeps(dependency(repoVHS, "8629188458dc6cb832f871ece3bd273507e8a766", "ComfyUI-VideoHelperSuite")), []string{}, 3)
	addWorkflow(WorkflowMissingNode, VersionMissingNode, "needs-missing-node", "Uses KJNodes that gpu-pool-a lacks", MachineGPUPoolA, missingNodePipeline(),
		withDeps(dependency(repoKJNodes, "c3dc82108a2a86c17094107ead61d63f8c76200e", "ComfyUI-KJNodes")), []string{"SomeMissingNode"}, 4)
	addWorkflow(WorkflowSlowRender, VersionSlowRender, "slow-render", "Long render that exceeds its run_timeout", MachineGPUPoolA, slowPipeline(), withDeps(), []string{}, 5)

	addDeployment := func(id, desc, workflowID, versionID, machineID string, limit int, timeout time.Duration, timing *Timing, day int) {
		m := s.machines[machineID]
		d := &deployment{ID: id, Description: desc, Environment: "production", WorkflowID: workflowID, VersionID: versionID,
			MachineID: machineID, MachineVersionID: m.VersionID, GPU: m.GPU, ConcurrencyLimit: limit, RunTimeout: timeout,
			IdleTimeout: 60, Created: t(day, 10), Updated: t(day+2, 30), Activated: t(day+2, 30), timing: timing}
		if d.RunTimeout == 0 {
			d.RunTimeout = 300 * time.Second
		}
		s.deployments[id] = d
		s.deploymentOrder = append(s.deploymentOrder, id)
	}
	addDeployment(DeploymentTxt2Img, "txt2img (gpu-pool-a)", WorkflowTxt2Img, VersionTxt2Img, MachineGPUPoolA, 50, 0, nil, 6)
	addDeployment(DeploymentUpscale, "upscale (gpu-pool-a)", WorkflowUpscale, VersionUpscale, MachineGPUPoolA, 50, 0, nil, 6)
	addDeployment(DeploymentImg2Video, "img2video (gpu-pool-b)", WorkflowImg2Video, VersionImg2Video, MachineGPUPoolB, 50, 0, nil, 7)
	addDeployment(DeploymentTxt2ImgB, "txt2img-b (gpu-pool-b)", WorkflowTxt2Img, VersionTxt2Img, MachineGPUPoolB, 50, 0, nil, 7)
	addDeployment(DeploymentTxt2ImgClassic, "txt2img-classic (studio-classic)", WorkflowTxt2Img, VersionTxt2Img, MachineStudioClassic, 10, 0, nil, 8)
	addDeployment(DeploymentOnBuilding, "txt2img on gpu-building (machine still building)", WorkflowTxt2Img, VersionTxt2Img, MachineGPUBuilding, 2, 0, nil, 8)
	addDeployment(DeploymentOnBroken, "txt2img on gpu-broken (machine build failed)", WorkflowTxt2Img, VersionTxt2Img, MachineGPUBroken, 2, 0, nil, 8)
	addDeployment(DeploymentOnLegacyModal, "txt2img on legacy-modal (unsupported machine type)", WorkflowTxt2Img, VersionTxt2Img, MachineLegacyModal, 2, 0, nil, 8)
	addDeployment(DeploymentNeedsMissingNode, "needs-missing-node (KJNodes not installed)", WorkflowMissingNode, VersionMissingNode, MachineGPUPoolA, 50, 0, nil, 9)
	addDeployment(DeploymentSlowTimeout, "slow-timeout (run_timeout 2s, render 10s)", WorkflowSlowRender, VersionSlowRender, MachineGPUPoolA, 50,
		2*time.Second, &Timing{Run: 10 * time.Second}, 9)

	for _, mf := range []*modelFile{
		{ID: ModelFileSDXL, Name: "sd_xl_base_1.0.safetensors", Folder: "checkpoints", Size: 6938078334},
		{ID: ModelFileLora, Name: "pixel-art-xl.safetensors", Folder: "loras", Size: 170543052},
	} {
		mf.Created, mf.Updated = t(2, 0), t(2, 0)
		s.models[mf.ID] = mf
	}
}
