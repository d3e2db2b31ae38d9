package comfytest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/png"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	_ "image/jpeg" // decode JPEG inputs
)

// output is one WorkflowRunOutputModel (reference §3.3).
type output struct {
	ID, RunID, OutputID string
	NodeID, NodeClass   string
	Images, Files       []*media
	Text                []string
	Created             time.Time
}

type media struct {
	Name, ContentType string
	Data              []byte
	UploadDuration    float64
}

// render produces the run's outputs, keyed by the index of the output node
// in the execution order. Identical effective inputs give identical bytes.
func (s *Server) render(rn *run) map[int]*output {
	p := rn.pipe
	out := map[int]*output{}
	fp := sha256.Sum256([]byte(fingerprint(p.Kind, rn.eff, p.Inputs)))
	for j, spec := range p.Outputs {
		idx := len(p.Inputs) + len(p.Nodes) + j
		o := &output{ID: newUUID(), RunID: rn.ID, OutputID: spec.OutputID, NodeID: strconv.Itoa(idx + 1), NodeClass: spec.Class}
		upload := 0.05 + float64(fp[j]%40)/100
		switch {
		case spec.OutputID == "caption":
			o.Text = []string{fmt.Sprintf("%s — seed %v, %v steps, cfg %v, %s", inputString(rn.eff, "prompt"),
				inputString(rn.eff, "seed"), inputString(rn.eff, "steps"), inputString(rn.eff, "cfg"), inputString(rn.eff, "size"))}
		case spec.OutputID == "video":
			src := s.sourceImage(rn, inputString(rn.eff, "image"))
			frames := inputInt(rn.eff, "frames", 16, 8, 64)
			fps := inputInt(rn.eff, "fps", 8, 1, 30)
			o.Files = []*media{{Name: "video_00001.gif", ContentType: "image/gif", Data: renderGIF(src, frames, fps), UploadDuration: upload}}
		case p.Kind == "upscale":
			factor := 2
			if inputString(rn.eff, "scale") == "4x" {
				factor = 4
			}
			src := s.sourceImage(rn, inputString(rn.eff, "image"))
			o.Images = []*media{{Name: "upscaled_00001_.png", ContentType: "image/png", Data: encodePNG(scaleNearest(src, factor)), UploadDuration: upload}}
		default:
			side := 64
			switch inputString(rn.eff, "size") {
			case "768x768":
				side = 96
			case "1024x1024":
				side = 128
			}
			o.Images = []*media{{Name: "ComfyUI_00001_.png", ContentType: "image/png", Data: encodePNG(synthImage(fp[:], side, side)), UploadDuration: upload}}
		}
		out[idx] = o
	}
	return out
}

// synthImage draws a deterministic picture from seed: a two-colour gradient
// with a few discs.
func synthImage(seed []byte, w, h int) *image.NRGBA {
	rng := mrand.New(mrand.NewPCG(binary.LittleEndian.Uint64(seed[0:8]), binary.LittleEndian.Uint64(seed[8:16])))
	rc := func() color.NRGBA {
		return color.NRGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), 255}
	}
	a, b := rc(), rc()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			t := float64(x+y) / float64(w+h-2)
			img.SetNRGBA(x, y, color.NRGBA{lerp(a.R, b.R, t), lerp(a.G, b.G, t), lerp(a.B, b.B, t), 255})
		}
	}
	for i := 0; i < 3+rng.IntN(4); i++ {
		cx, cy, r := rng.IntN(w), rng.IntN(h), 4+rng.IntN(w/4+1)
		c := rc()
		for y := max(0, cy-r); y < min(h, cy+r); y++ {
			for x := max(0, cx-r); x < min(w, cx+r); x++ {
				if (x-cx)*(x-cx)+(y-cy)*(y-cy) <= r*r {
					img.SetNRGBA(x, y, c)
				}
			}
		}
	}
	return img
}

func lerp(a, b uint8, t float64) uint8 {
	return uint8(math.Round(float64(a) + (float64(b)-float64(a))*t))
}

func encodePNG(img image.Image) []byte {
	var buf bytes.Buffer
	_ = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img)
	return buf.Bytes()
}

// scaleNearest upscales img by an integer factor.
func scaleNearest(img image.Image, factor int) *image.NRGBA {
	b := img.Bounds()
	out := image.NewNRGBA(image.Rect(0, 0, b.Dx()*factor, b.Dy()*factor))
	for y := 0; y < out.Rect.Dy(); y++ {
		for x := 0; x < out.Rect.Dx(); x++ {
			out.Set(x, y, img.At(b.Min.X+x/factor, b.Min.Y+y/factor))
		}
	}
	return out
}

// fitImage shrinks img (nearest neighbour) so that its long side is at most n.
func fitImage(img image.Image, n int) image.Image {
	b := img.Bounds()
	if b.Dx() <= n && b.Dy() <= n {
		return img
	}
	scale := float64(max(b.Dx(), b.Dy())) / float64(n)
	w, h := max(1, int(float64(b.Dx())/scale)), max(1, int(float64(b.Dy())/scale))
	out := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			out.Set(x, y, img.At(b.Min.X+int(float64(x)*scale), b.Min.Y+int(float64(y)*scale)))
		}
	}
	return out
}

// renderGIF animates src: a horizontal pan with a moving bright bar.
func renderGIF(src image.Image, frames, fps int) []byte {
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	anim := &gif.GIF{LoopCount: 0}
	for f := 0; f < frames; f++ {
		pm := image.NewPaletted(image.Rect(0, 0, w, h), palette.WebSafe)
		shift := f * w / frames
		bar := f * h / frames
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				r, g, bl, _ := src.At(b.Min.X+(x+shift)%w, b.Min.Y+y).RGBA()
				if y == bar {
					r, g, bl = 0xffff, 0xffff, 0xffff
				}
				pm.Pix[y*pm.Stride+x] = webSafeIndex(r, g, bl)
			}
		}
		anim.Image = append(anim.Image, pm)
		anim.Delay = append(anim.Delay, max(1, 100/fps))
	}
	var buf bytes.Buffer
	_ = gif.EncodeAll(&buf, anim)
	return buf.Bytes()
}

// webSafeIndex maps a 16-bit colour to its palette.WebSafe index directly.
func webSafeIndex(r, g, b uint32) uint8 {
	q := func(v uint32) uint32 { return (v>>8 + 25) / 51 }
	return uint8(q(r)*36 + q(g)*6 + q(b))
}

// sourceImage resolves an image input. URLs that point at the simulator
// itself (loopback /files/... URLs) are read from its own store; anything
// else is never fetched and is replaced by a picture derived from the URL.
func (s *Server) sourceImage(rn *run, raw string) image.Image {
	if data := s.localFile(raw); data != nil {
		if img, _, err := image.Decode(bytes.NewReader(data)); err == nil {
			return fitImage(img, 64)
		}
	}
	seed := sha256.Sum256([]byte("image-input|" + raw))
	return synthImage(seed[:], 64, 64)
}

// localFile returns the bytes behind one of the simulator's own file URLs.
func (s *Server) localFile(raw string) []byte {
	u, err := url.Parse(raw)
	if err != nil || !strings.HasPrefix(u.Path, "/files/") {
		return nil
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); !(host == "localhost" || ip != nil && ip.IsLoopback()) {
		return nil
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/files/"), "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(parts) == 2 && parts[0] == "inputs":
		if b := s.blobs[strings.TrimSuffix(parts[1], extOf(parts[1]))]; b != nil {
			return b.Data
		}
	case len(parts) == 3 && parts[0] == "assets":
		if a := s.assets[parts[1]]; a != nil {
			if b := s.blobs[a.ID]; b != nil {
				return b.Data
			}
		}
	case len(parts) == 2:
		if m := s.findMediaLocked(parts[0], parts[1]); m != nil {
			return m.Data
		}
	}
	return nil
}

func (s *Server) findMediaLocked(runID, name string) *media {
	rn := s.runs[runID]
	if rn == nil {
		return nil
	}
	for _, o := range rn.outputs {
		for _, m := range append(append([]*media{}, o.Images...), o.Files...) {
			if m.Name == name {
				return m
			}
		}
	}
	return nil
}

// ---- signed URLs ------------------------------------------------------------------

// signedURL returns origin+path with exp (unix seconds, rounded up) and an
// HMAC signature, like an S3 presigned GET.
func (s *Server) signedURL(origin, path string, ttl time.Duration, extra ...string) string {
	exp := time.Now().Add(ttl)
	expUnix := exp.Unix()
	if exp.Nanosecond() > 0 {
		expUnix++
	}
	q := url.Values{}
	q.Set("exp", strconv.FormatInt(expUnix, 10))
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	q.Set("sig", s.signature(path, q))
	return origin + path + "?" + q.Encode()
}

func (s *Server) signature(path string, q url.Values) string {
	mac := hmac.New(sha256.New, s.signKey)
	mac.Write([]byte(path + "\n" + q.Get("exp") + "\n" + q.Get("ct")))
	return hex.EncodeToString(mac.Sum(nil))[:40]
}

// checkSignature writes an S3-style 403 and returns false when the URL is
// unsigned, tampered with or expired.
func (s *Server) checkSignature(w http.ResponseWriter, r *http.Request) bool {
	q := r.URL.Query()
	sig := q.Get("sig")
	if sig == "" || q.Get("exp") == "" {
		s3Error(w, http.StatusForbidden, "AccessDenied", "Access Denied")
		return false
	}
	if !hmac.Equal([]byte(sig), []byte(s.signature(r.URL.Path, q))) {
		s3Error(w, http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
		return false
	}
	exp, err := strconv.ParseInt(q.Get("exp"), 10, 64)
	if err != nil || !time.Now().Before(time.Unix(exp, 0)) {
		s3Error(w, http.StatusForbidden, "AccessDenied", "Request has expired")
		return false
	}
	return true
}

func s3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message><RequestId>%s</RequestId></Error>", code, msg, strings.ToUpper(randomHex(8)))
}

func serveBytes(w http.ResponseWriter, contentType string, data []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Header().Set("Cache-Control", "private, max-age=3600")
	sum := sha256.Sum256(data)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

// handleRunFile serves GET /files/{run_id}/{name}.
func (s *Server) handleRunFile(w http.ResponseWriter, r *http.Request) {
	if !s.checkSignature(w, r) {
		return
	}
	s.mu.Lock()
	m := s.findMediaLocked(r.PathValue("run_id"), r.PathValue("name"))
	s.mu.Unlock()
	if m == nil {
		s3Error(w, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	serveBytes(w, m.ContentType, m.Data)
}

// outputsJSONLocked encodes outputs, signing every private URL afresh.
// Webhook payloads are raw dicts and keep the producer's extra item keys
// (output_id, format); GET responses drop them.
func (s *Server) outputsJSONLocked(outs []*output, origin string, tf func(time.Time) string, raw bool) []any {
	list := make([]any, 0, len(outs))
	for _, o := range outs {
		data := map[string]any{}
		items := func(ms []*media) []any {
			var out []any
			for _, m := range ms {
				it := map[string]any{
					"url":  s.signedURL(origin, "/files/"+o.RunID+"/"+m.Name, s.opts.OutputURLTTL),
					"type": "output", "filename": m.Name, "subfolder": "", "is_public": false,
					"upload_duration": pyFloat(m.UploadDuration),
				}
				if raw {
					it["output_id"] = o.OutputID
					it["format"] = m.ContentType
				}
				out = append(out, it)
			}
			return out
		}
		if len(o.Images) > 0 {
			data["images"] = items(o.Images)
		}
		if len(o.Files) > 0 {
			data["files"] = items(o.Files)
		}
		if len(o.Text) > 0 {
			data["text"] = o.Text
		}
		list = append(list, map[string]any{
			"id": o.ID, "run_id": o.RunID, "output_id": o.OutputID, "data": data,
			"node_meta":  map[string]any{"node_id": o.NodeID, "node_class": o.NodeClass},
			"created_at": tf(o.Created), "updated_at": tf(o.Created), "type": nil, "node_id": nil,
		})
	}
	return list
}
