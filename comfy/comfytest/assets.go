package comfytest

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"
)

// asset is one row of the assets library. Path is the folder that contains
// it ("/" or "/a/b"); a folder's own full path is path.Join(Path, Name).
type asset struct {
	ID, Name, Path string
	IsFolder       bool
	Size           int64
	MimeType       string
	External       string // URL registered through /assets/add
	Created        time.Time
	Updated        time.Time
}

// blob is stored file content (uploads, presigned PUTs).
type blob struct {
	ID, Name, ContentType string
	Data                  []byte
}

const maxUpload = 250 << 20

func extOf(name string) string { return path.Ext(name) }

func mimeFor(name string) string {
	if t := mime.TypeByExtension(strings.ToLower(path.Ext(name))); t != "" {
		t, _, _ = strings.Cut(t, ";")
		return t
	}
	return "application/octet-stream"
}

func allowedMime(t string) bool {
	for _, p := range []string{"image/", "video/", "application/", "audio/"} {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return false
}

func cleanFolder(p string) string {
	if p == "" {
		return "/"
	}
	return path.Clean("/" + p)
}

func (s *Server) assetURL(origin string, a *asset, signed bool) any {
	if a.IsFolder {
		return nil
	}
	if a.External != "" {
		return a.External
	}
	p := "/files/assets/" + a.ID + "/" + url.PathEscape(a.Name)
	if signed {
		return s.signedURL(origin, p, s.opts.OutputURLTTL)
	}
	// Private bucket: the raw, unsigned object URL (it answers 403).
	return origin + p
}

func (s *Server) assetJSON(origin string, a *asset, signed bool) map[string]any {
	var size, mt any
	if !a.IsFolder {
		size, mt = a.Size, a.MimeType
	}
	return map[string]any{"id": a.ID, "user_id": SeedUserID, "org_id": SeedOrgID, "name": a.Name, "is_folder": a.IsFolder,
		"path": a.Path, "file_size": size, "url": s.assetURL(origin, a, signed), "mime_type": mt,
		"created_at": ormTime(a.Created), "updated_at": ormTime(a.Updated), "deleted": false}
}

func (s *Server) folderExistsLocked(p string) bool {
	if p == "/" {
		return true
	}
	for _, a := range s.assets {
		if a.IsFolder && path.Join(a.Path, a.Name) == p {
			return true
		}
	}
	return false
}

// readMultipartFile returns the "file" part of a multipart body, writing a
// 422 when it is missing.
func readMultipartFile(w http.ResponseWriter, r *http.Request) (string, []byte, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxUpload+1<<20)
	f, hdr, err := r.FormFile("file")
	if err != nil {
		write422(w, []validationError{{Type: "missing", Loc: []any{"body", "file"}, Msg: "Field required", Input: nil}})
		return "", nil, false
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		writeDetail(w, http.StatusRequestEntityTooLarge, "File too large. Maximum size is 250MB")
		return "", nil, false
	}
	return hdr.Filename, data, true
}

// ---- POST /file/upload -------------------------------------------------------------------

func (s *Server) handleFileUpload(w http.ResponseWriter, r *http.Request) {
	name, data, ok := readMultipartFile(w, r)
	if !ok {
		return
	}
	ct := mimeFor(name)
	if !allowedMime(ct) {
		writeDetail(w, http.StatusBadRequest, "Unsupported file type: "+ct)
		return
	}
	prefix := "file_"
	switch {
	case strings.HasPrefix(ct, "image/"):
		prefix = "img_"
	case strings.HasPrefix(ct, "video/"):
		prefix = "vid_"
	case strings.HasPrefix(ct, "audio/"):
		prefix = "audio_"
	case ct == "application/zip":
		prefix = "zip_"
	}
	id := prefix + randomHex(8)
	s.mu.Lock()
	s.blobs[id] = &blob{ID: id, Name: name, ContentType: ct, Data: data}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"message": "File uploaded successfully", "file_id": id, "file_name": name,
		"file_url": s.signedURL(s.origin(r), "/files/inputs/"+id+extOf(name), time.Hour),
	})
}

func (s *Server) handleInputFile(w http.ResponseWriter, r *http.Request) {
	if !s.checkSignature(w, r) {
		return
	}
	name := r.PathValue("name")
	s.mu.Lock()
	b := s.blobs[strings.TrimSuffix(name, extOf(name))]
	s.mu.Unlock()
	if b == nil {
		s3Error(w, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	serveBytes(w, b.ContentType, b.Data)
}

// ---- assets -------------------------------------------------------------------------------

func (s *Server) handleListAssets(w http.ResponseWriter, r *http.Request) {
	folder := cleanFolder(r.URL.Query().Get("path"))
	s.mu.Lock()
	var items []*asset
	for _, a := range s.assets {
		if a.Path == folder {
			items = append(items, a)
		}
	}
	sortAssets(items)
	out := []any{}
	for _, a := range items {
		out = append(out, s.assetJSON(s.origin(r), a, false))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// sortAssets orders folders first, then newest first.
func sortAssets(items []*asset) {
	sort.Slice(items, func(i, j int) bool {
		a, b := items[i], items[j]
		if a.IsFolder != b.IsFolder {
			return a.IsFolder
		}
		if !a.Created.Equal(b.Created) {
			return a.Created.After(b.Created)
		}
		return a.ID < b.ID
	})
}

func decodeBody(w http.ResponseWriter, r *http.Request, required ...string) (map[string]any, bool) {
	var body map[string]any
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err := json.Unmarshal(raw, &body); err != nil || body == nil {
		write422(w, []validationError{{Type: "json_invalid", Loc: []any{"body", 0}, Msg: "JSON decode error", Input: map[string]any{}}})
		return nil, false
	}
	var errs []validationError
	for _, k := range required {
		if body[k] == nil {
			errs = append(errs, validationError{Type: "missing", Loc: []any{"body", k}, Msg: "Field required", Input: body})
		}
	}
	if len(errs) > 0 {
		write422(w, errs)
		return nil, false
	}
	return body, true
}

func str(body map[string]any, k string) string {
	switch v := body[k].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

func (s *Server) handleCreateFolder(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeBody(w, r, "name")
	if !ok {
		return
	}
	name, parent := str(body, "name"), cleanFolder(str(body, "parent_path"))
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.folderExistsLocked(parent) {
		writeDetail(w, http.StatusNotFound, "Parent folder not found")
		return
	}
	if s.folderExistsLocked(path.Join(parent, name)) {
		writeDetail(w, http.StatusBadRequest, "Folder already exists")
		return
	}
	now := time.Now()
	a := &asset{ID: newUUID(), Name: name, Path: parent, IsFolder: true, Created: now, Updated: now}
	s.assets[a.ID] = a
	writeJSON(w, http.StatusOK, s.assetJSON(s.origin(r), a, false))
}

func (s *Server) handleAssetUpload(w http.ResponseWriter, r *http.Request) {
	parent := cleanFolder(r.URL.Query().Get("parent_path"))
	name, data, ok := readMultipartFile(w, r)
	if !ok {
		return
	}
	now := time.Now()
	a := &asset{ID: newUUID(), Name: name, Path: parent, Size: int64(len(data)), MimeType: mimeFor(name), Created: now, Updated: now}
	s.mu.Lock()
	s.assets[a.ID] = a
	s.blobs[a.ID] = &blob{ID: a.ID, Name: name, ContentType: a.MimeType, Data: data}
	body := s.assetJSON(s.origin(r), a, false)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) handlePresignedURL(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var errs []validationError
	for _, k := range []string{"file_name", "type"} {
		if q.Get(k) == "" {
			errs = append(errs, validationError{Type: "missing", Loc: []any{"query", k}, Msg: "Field required", Input: nil})
		}
	}
	if len(errs) > 0 {
		write422(w, errs)
		return
	}
	id := newUUID()
	name := q.Get("file_name")
	origin := s.origin(r)
	writeJSON(w, http.StatusOK, map[string]any{
		"url":          s.signedURL(origin, "/files/put/"+id+"/"+url.PathEscape(name), time.Hour, "ct", q.Get("type")),
		"download_url": s.signedURL(origin, "/files/assets/"+id+"/"+url.PathEscape(name), s.opts.OutputURLTTL),
		"file_id":      id, "db_path": cleanFolder(q.Get("parent_path")), "is_public": false,
	})
}

// handlePresignedPut accepts the direct upload; the Content-Type must be
// the one that was signed, as with S3.
func (s *Server) handlePresignedPut(w http.ResponseWriter, r *http.Request) {
	if !s.checkSignature(w, r) {
		return
	}
	if ct := r.URL.Query().Get("ct"); ct != "" && r.Header.Get("Content-Type") != ct {
		s3Error(w, http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.")
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxUpload))
	if err != nil {
		s3Error(w, http.StatusBadRequest, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
		return
	}
	id, name := r.PathValue("file_id"), r.PathValue("name")
	s.mu.Lock()
	s.blobs[id] = &blob{ID: id, Name: name, ContentType: r.Header.Get("Content-Type"), Data: data}
	s.mu.Unlock()
	w.Header().Set("ETag", `"`+randomHex(16)+`"`)
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleRegisterAsset(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeBody(w, r, "file_id", "file_name", "file_size", "db_path", "url", "mime_type")
	if !ok {
		return
	}
	size, _ := body["file_size"].(float64)
	now := time.Now()
	a := &asset{ID: str(body, "file_id"), Name: str(body, "file_name"), Path: cleanFolder(str(body, "db_path")),
		Size: int64(size), MimeType: str(body, "mime_type"), Created: now, Updated: now}
	s.mu.Lock()
	s.assets[a.ID] = a
	out := s.assetJSON(s.origin(r), a, false)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// handleAddAsset registers an external URL. The real service sends a HEAD
// request; the simulator makes no outbound call and trusts the extension.
func (s *Server) handleAddAsset(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeBody(w, r, "url")
	if !ok {
		return
	}
	u, err := url.Parse(str(body, "url"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		writeDetail(w, http.StatusBadRequest, "Invalid URL")
		return
	}
	name := path.Base(u.Path)
	if name == "." || name == "/" {
		name = "asset"
	}
	ct := mimeFor(name)
	if !allowedMime(ct) || ct == "application/octet-stream" {
		writeDetail(w, http.StatusBadRequest, "Unsupported file type")
		return
	}
	now := time.Now()
	a := &asset{ID: newUUID(), Name: name, Path: cleanFolder(str(body, "path")), MimeType: ct, External: u.String(), Created: now, Updated: now}
	s.mu.Lock()
	s.assets[a.ID] = a
	out := s.assetJSON(s.origin(r), a, false)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleSearchAssets(w http.ResponseWriter, r *http.Request) {
	limit, ok := queryInt(w, r, "limit", 5)
	if !ok {
		return
	}
	query := strings.ToLower(r.URL.Query().Get("query"))
	s.mu.Lock()
	var items []*asset
	for _, a := range s.assets {
		if strings.Contains(strings.ToLower(a.Name), query) {
			items = append(items, a)
		}
	}
	sortAssets(items)
	out := []any{}
	for _, a := range page(items, 0, limit) {
		out = append(out, s.assetJSON(s.origin(r), a, false))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleGetAsset(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a := s.assets[r.PathValue("asset_id")]
	if a == nil {
		s.mu.Unlock()
		writeDetail(w, http.StatusNotFound, "Asset not found")
		return
	}
	out := s.assetJSON(s.origin(r), a, true)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleMoveAsset(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeBody(w, r, "path")
	if !ok {
		return
	}
	target := cleanFolder(str(body, "path"))
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.assets[r.PathValue("asset_id")]
	switch {
	case a == nil:
		writeDetail(w, http.StatusNotFound, "Asset not found")
	case a.IsFolder:
		writeDetail(w, http.StatusBadRequest, "Moving folders is not supported")
	case !s.folderExistsLocked(target):
		writeDetail(w, http.StatusNotFound, "Target folder not found")
	default:
		a.Path, a.Updated = target, time.Now()
		writeJSON(w, http.StatusOK, s.assetJSON(s.origin(r), a, false))
	}
}

func (s *Server) handleDeleteAsset(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.assets[r.PathValue("asset_id")]
	if a == nil {
		writeDetail(w, http.StatusNotFound, "Asset not found")
		return
	}
	delete(s.assets, a.ID)
	if a.IsFolder {
		full := path.Join(a.Path, a.Name)
		for id, c := range s.assets { // child rows only
			if c.Path == full || strings.HasPrefix(c.Path, full+"/") {
				delete(s.assets, id)
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"message": "Folder deleted successfully"})
		return
	}
	delete(s.blobs, a.ID)
	writeJSON(w, http.StatusOK, map[string]any{"message": "Asset deleted successfully"})
}

func (s *Server) handleAssetFile(w http.ResponseWriter, r *http.Request) {
	if !s.checkSignature(w, r) {
		return
	}
	s.mu.Lock()
	var b *blob
	if a := s.assets[r.PathValue("asset_id")]; a != nil {
		b = s.blobs[a.ID]
	} else {
		b = s.blobs[r.PathValue("asset_id")] // presigned upload not registered yet
	}
	s.mu.Unlock()
	if b == nil {
		s3Error(w, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	serveBytes(w, b.ContentType, b.Data)
}

// ---- model files (POST /file/{file_id}/rename) -------------------------------------------

var validModelName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func (s *Server) modelJSON(m *modelFile) map[string]any {
	return map[string]any{"id": m.ID, "user_id": SeedUserID, "org_id": SeedOrgID, "user_volume_id": "vol-" + SeedOrgID,
		"model_name": m.Name, "folder_path": m.Folder, "civitai_id": nil, "civitai_version_id": nil, "civitai_url": nil,
		"civitai_download_url": nil, "civitai_model_response": nil, "hf_url": nil, "s3_url": nil, "user_url": nil,
		"filehash_sha256": nil, "is_public": false, "status": "success", "upload_type": "download-url",
		"model_type": m.Folder, "error_log": nil, "size": m.Size, "download_progress": 100, "is_done": true,
		"deleted": false, "created_at": ormTime(m.Created), "updated_at": ormTime(m.Updated)}
}

func (s *Server) handleModelRename(w http.ResponseWriter, r *http.Request) {
	body, ok := decodeBody(w, r, "filename")
	if !ok {
		return
	}
	name := str(body, "filename")
	if !validModelName.MatchString(name) {
		writeDetail(w, http.StatusBadRequest, "Invalid filename. Only letters, numbers, underscores, hyphens and dots are allowed")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.models[r.PathValue("file_id")]
	if m == nil {
		writeDetail(w, http.StatusNotFound, "File not found")
		return
	}
	for _, o := range s.models {
		if o != m && o.Folder == m.Folder && o.Name == name {
			writeDetail(w, http.StatusBadRequest, "A file with this name already exists")
			return
		}
	}
	m.Name, m.Updated = name, time.Now()
	writeJSON(w, http.StatusOK, s.modelJSON(m))
}
