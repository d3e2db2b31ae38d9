package comfytest

import (
	"bytes"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
)

func upload(t *testing.T, s *Server, path, name string, data []byte) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("file", name)
	_, _ = fw.Write(data)
	_ = mw.Close()
	req, _ := http.NewRequest("POST", s.URL()+path, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+s.APIKey())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := resp{res.StatusCode, res.Header, b}
	if r.Status != 200 {
		t.Fatalf("upload: %d %s", r.Status, b)
	}
	return r.json(t)
}

func TestUploadFeedsUpscaleAndVideo(t *testing.T) {
	s := newSim(t, Options{})
	src := image.NewNRGBA(image.Rect(0, 0, 16, 8))
	for i := range src.Pix {
		src.Pix[i] = byte(i * 7)
	}
	for i := 3; i < len(src.Pix); i += 4 {
		src.Pix[i] = 255
	}
	var pngBuf bytes.Buffer
	_ = png.Encode(&pngBuf, src)
	up := upload(t, s, "/file/upload", "input.png", pngBuf.Bytes())
	if !strings.HasPrefix(up["file_id"].(string), "img_") || up["file_name"] != "input.png" {
		t.Errorf("upload: %v", up)
	}
	fileURL := up["file_url"].(string)
	if r := fetch(t, fileURL); r.Status != 200 || !bytes.Equal(r.Body, pngBuf.Bytes()) {
		t.Fatalf("file_url: %d", r.Status)
	}

	id := queue(t, s, map[string]any{"deployment_id": DeploymentUpscale, "inputs": map[string]any{"image": fileURL, "scale": "4x"}})
	run, _ := waitStatus(t, s, id)
	if run["status"] != "success" {
		t.Fatalf("upscale: %v", run["status"])
	}
	out, err := png.Decode(bytes.NewReader(fetch(t, firstImageURL(t, run)).Body))
	if err != nil || out.Bounds().Dx() != 64 || out.Bounds().Dy() != 32 {
		t.Fatalf("upscaled: %v %v", err, out.Bounds())
	}
	if color.NRGBAModel.Convert(out.At(5, 5)) != src.At(1, 1) {
		t.Errorf("upscaled pixel %v != source %v", out.At(5, 5), src.At(1, 1))
	}

	id = queue(t, s, map[string]any{"deployment_id": DeploymentImg2Video, "inputs": map[string]any{"image": "https://example.com/x.png", "frames": 8, "fps": 4}})
	run, _ = waitStatus(t, s, id)
	files := run["outputs"].([]any)[0].(map[string]any)["data"].(map[string]any)["files"].([]any)
	r := fetch(t, files[0].(map[string]any)["url"].(string))
	g, err := gif.DecodeAll(bytes.NewReader(r.Body))
	if err != nil || len(g.Image) != 8 || g.Delay[0] != 25 || r.Header.Get("Content-Type") != "image/gif" {
		t.Fatalf("gif: %v frames=%d", err, len(g.Image))
	}
}

func TestAssets(t *testing.T) {
	s := newSim(t, Options{})
	if r := call(t, s, "POST", "/assets/folder", map[string]any{"name": "refs"}); r.Status != 200 || r.json(t)["is_folder"] != true {
		t.Fatalf("folder: %d %s", r.Status, r.Body)
	}
	if r := call(t, s, "POST", "/assets/folder", map[string]any{"name": "refs"}); r.Status != 400 {
		t.Errorf("duplicate folder: %d", r.Status)
	}
	a := upload(t, s, "/assets/upload?parent_path=/refs", "cat.png", []byte("\x89PNG fake"))
	if a["path"] != "/refs" || a["mime_type"] != "image/png" {
		t.Errorf("asset: %v", a)
	}
	// The listed URL is the raw private-bucket URL; GET /assets/{id} signs it.
	if r := fetch(t, a["url"].(string)); r.Status != 403 {
		t.Errorf("unsigned asset URL: %d", r.Status)
	}
	got := call(t, s, "GET", "/assets/"+a["id"].(string), nil).json(t)
	if r := fetch(t, got["url"].(string)); r.Status != 200 || string(r.Body) != "\x89PNG fake" {
		t.Errorf("signed asset URL: %d", r.Status)
	}
	if l := call(t, s, "GET", "/assets?path=/refs", nil).list(t); len(l) != 1 {
		t.Errorf("list: %v", l)
	}
	if r := call(t, s, "PATCH", "/assets/"+a["id"].(string), map[string]any{"path": "/nope"}); r.Status != 404 {
		t.Errorf("move to missing folder: %d", r.Status)
	}
	if r := call(t, s, "PATCH", "/assets/"+a["id"].(string), map[string]any{"path": "/"}); r.Status != 200 || r.json(t)["path"] != "/" {
		t.Errorf("move: %d %s", r.Status, r.Body)
	}
	if l := call(t, s, "GET", "/assets/search?query=cat", nil).list(t); len(l) != 1 {
		t.Errorf("search: %v", l)
	}

	// Presigned PUT + register.
	p := call(t, s, "GET", "/assets/presigned-url?file_name=dog.jpg&type=image/jpeg&parent_path=/refs", nil).json(t)
	put := func(ct string) int {
		req, _ := http.NewRequest("PUT", p["url"].(string), strings.NewReader("jpegdata"))
		req.Header.Set("Content-Type", ct)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := put("image/png"); code != 403 {
		t.Errorf("PUT with the wrong content type: %d", code)
	}
	if code := put("image/jpeg"); code != 200 {
		t.Fatalf("PUT: %d", code)
	}
	reg := call(t, s, "POST", "/assets/register", map[string]any{"file_id": p["file_id"], "file_name": "dog.jpg", "file_size": 8,
		"db_path": p["db_path"], "url": p["download_url"], "mime_type": "image/jpeg"})
	if reg.Status != 200 || reg.json(t)["path"] != "/refs" {
		t.Fatalf("register: %d %s", reg.Status, reg.Body)
	}
	if r := fetch(t, p["download_url"].(string)); r.Status != 200 || string(r.Body) != "jpegdata" {
		t.Errorf("download_url: %d", r.Status)
	}
	if r := call(t, s, "POST", "/assets/add", map[string]any{"url": "https://example.com/a/b/photo.webp", "path": "/"}); r.Status != 200 || r.json(t)["name"] != "photo.webp" {
		t.Errorf("add by URL: %d %s", r.Status, r.Body)
	}
	if r := call(t, s, "DELETE", "/assets/"+a["id"].(string), nil); r.Status != 200 {
		t.Errorf("delete: %d", r.Status)
	}

	// Model file rename.
	if r := call(t, s, "POST", "/file/"+ModelFileSDXL+"/rename", map[string]any{"filename": "bad name!"}); r.Status != 400 {
		t.Errorf("bad rename: %d", r.Status)
	}
	if r := call(t, s, "POST", "/file/"+ModelFileSDXL+"/rename", map[string]any{"filename": "sdxl.safetensors"}); r.Status != 200 || r.json(t)["model_name"] != "sdxl.safetensors" {
		t.Errorf("rename: %d %s", r.Status, r.Body)
	}
	if r := call(t, s, "POST", "/file/d0000000-0000-4000-8000-0000000000ff/rename", map[string]any{"filename": "x"}); r.Status != 404 {
		t.Errorf("rename missing: %d", r.Status)
	}
}
