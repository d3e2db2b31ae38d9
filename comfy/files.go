package comfy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// FilesService uploads run input files and manages model files.
type FilesService service

// UploadedFile is a run input file stored in the org's bucket.
type UploadedFile struct {
	Message  string `json:"message"`
	FileID   string `json:"file_id"`
	FileName string `json:"file_name"`
	// FileURL can be used directly as a run input value. For private
	// buckets it is a presigned URL that expires after one hour. The run
	// endpoint re-signs such URLs when they appear in inputs.
	FileURL string `json:"file_url"`
}

// Upload sends a run input file (POST /file/upload, multipart field
// "file"). The server guesses the MIME type from name. The type must be
// image/*, video/*, audio/* or application/*, and the file at most 250 MB.
// The body is streamed from r, so the request is never retried.
func (s *FilesService) Upload(ctx context.Context, name string, r io.Reader) (*UploadedFile, error) {
	out := new(UploadedFile)
	if err := s.client.upload(ctx, "/file/upload", nil, name, r, out); err != nil {
		return nil, err
	}
	return out, nil
}

var modelFileName = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)

// ModelFile is a model record in the org's Modal volume. The reference
// does not list its fields, so only likely ones are decoded. Raw holds the
// full object.
type ModelFile struct {
	ID         string          `json:"id"`
	ModelName  string          `json:"model_name"`
	FolderPath string          `json:"folder_path"`
	Status     string          `json:"status"`
	UserID     string          `json:"user_id"`
	OrgID      string          `json:"org_id"`
	CreatedAt  Time            `json:"created_at"`
	UpdatedAt  Time            `json:"updated_at"`
	Raw        json.RawMessage `json:"-"`
}

// UnmarshalJSON keeps the raw object and ignores fields of unexpected type.
func (m *ModelFile) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*m = ModelFile{
		ID:         looseString(raw["id"]),
		ModelName:  looseString(raw["model_name"]),
		FolderPath: looseString(raw["folder_path"]),
		Status:     looseString(raw["status"]),
		UserID:     looseString(raw["user_id"]),
		OrgID:      looseString(raw["org_id"]),
		Raw:        append(json.RawMessage(nil), data...),
	}
	_ = m.CreatedAt.UnmarshalJSON(raw["created_at"])
	_ = m.UpdatedAt.UnmarshalJSON(raw["updated_at"])
	return nil
}

// Rename renames a model file in the org's Modal volume
// (POST /file/{file_id}/rename). fileID is a model record id, not an
// asset id. The new name may only hold letters, digits, "_", "-" and ".",
// which is checked before sending.
func (s *FilesService) Rename(ctx context.Context, fileID, newName string) (*ModelFile, error) {
	p, err := escapeID("file id", fileID)
	if err != nil {
		return nil, err
	}
	if !modelFileName.MatchString(newName) {
		return nil, fmt.Errorf("%w: filename %q may only contain letters, digits, _, - and .", ErrInvalidArgument, newName)
	}
	body := struct {
		Filename string `json:"filename"`
	}{newName}
	return doOne[ModelFile](ctx, s.client, http.MethodPost, "/file/"+p+"/rename", nil, body, callOpts{})
}

// upload streams a multipart body, so a 250 MB file is never held in
// memory. The body cannot be replayed, so it is never retried.
func (c *Client) upload(ctx context.Context, path string, query url.Values, name string, r io.Reader, out any) error {
	if strings.TrimSpace(name) == "" {
		return fmt.Errorf("%w: file name is empty", ErrInvalidArgument)
	}
	if r == nil {
		return fmt.Errorf("%w: nil reader", ErrInvalidArgument)
	}
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	req, err := c.NewRequest(ctx, http.MethodPost, path, io.Reader(pr))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(writeFilePart(mw, name, r))
	}()
	_, err = c.send(ctx, req, callOpts{noRetry: true}, jsonHandler(out))
	// If the server answered before reading everything, closing the
	// reader makes the writer fail. Waiting for it means r is no longer
	// being read once Upload returns.
	pr.Close()
	<-done
	return err
}

func writeFilePart(mw *multipart.Writer, name string, r io.Reader) error {
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%s"`, escapeQuotes(filepath.Base(name))))
	ct := mime.TypeByExtension(filepath.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	part, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := io.Copy(part, r); err != nil {
		return err
	}
	return mw.Close()
}

var quoteEscaper = strings.NewReplacer("\\", "\\\\", `"`, "\\\"", "\r", "", "\n", "")

func escapeQuotes(s string) string { return quoteEscaper.Replace(s) }

// AssetsService manages the org's asset library: a folder tree of files in
// S3.
type AssetsService service

// Asset is a file or folder in the asset library.
type Asset struct {
	ID       string `json:"id"`
	UserID   string `json:"user_id"`
	OrgID    string `json:"org_id"`
	Name     string `json:"name"`
	IsFolder bool   `json:"is_folder"`
	Path     string `json:"path"`
	FileSize int64  `json:"file_size"`
	// URL is presigned for one hour when the bucket is private. Upload is
	// an exception: there the server returns the raw unsigned S3 URL, so
	// call Get for a usable one.
	URL       string `json:"url"`
	MimeType  string `json:"mime_type"`
	Deleted   bool   `json:"deleted"`
	CreatedAt Time   `json:"created_at"`
	UpdatedAt Time   `json:"updated_at"`
}

// UnmarshalJSON accepts a file size sent as a float or a string.
func (a *Asset) UnmarshalJSON(data []byte) error {
	type plain Asset
	var aux struct {
		*plain
		FileSize json.RawMessage `json:"file_size"`
	}
	*a = Asset{}
	aux.plain = (*plain)(a)
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	if f, ok := looseFloat(aux.FileSize); ok && f >= 0 && f < 1<<62 {
		a.FileSize = int64(f)
	}
	return nil
}

// List lists one level of the folder tree (GET /assets). An empty path
// means the root, "/".
func (s *AssetsService) List(ctx context.Context, path string) ([]Asset, error) {
	q := url.Values{}
	setStr(q, "path", path)
	return getList[Asset](ctx, s.client, "/assets", q)
}

// Get fetches one asset (GET /assets/{id}).
func (s *AssetsService) Get(ctx context.Context, id string) (*Asset, error) {
	p, err := escapeID("asset id", id)
	if err != nil {
		return nil, err
	}
	return doOne[Asset](ctx, s.client, http.MethodGet, "/assets/"+p, nil, nil, callOpts{})
}

// CreateFolder creates a folder (POST /assets/folder). An empty parentPath
// means the root. The server answers 400 if the folder exists.
func (s *AssetsService) CreateFolder(ctx context.Context, name, parentPath string) (*Asset, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: folder name is empty", ErrInvalidArgument)
	}
	if parentPath == "" {
		parentPath = "/"
	}
	body := struct {
		Name       string `json:"name"`
		ParentPath string `json:"parent_path"`
	}{name, parentPath}
	return doOne[Asset](ctx, s.client, http.MethodPost, "/assets/folder", nil, body, callOpts{})
}

// Upload sends a file into the folder parentPath (POST /assets/upload,
// multipart field "file"). The body is streamed, so the request is never
// retried. For large files, PresignedURL followed by Register avoids
// passing the bytes through the API.
func (s *AssetsService) Upload(ctx context.Context, parentPath, name string, r io.Reader) (*Asset, error) {
	q := url.Values{}
	setStr(q, "parent_path", parentPath)
	out := new(Asset)
	if err := s.client.upload(ctx, "/assets/upload", q, name, r, out); err != nil {
		return nil, err
	}
	return out, nil
}

// PresignedURLRequest describes a file to upload straight to S3.
type PresignedURLRequest struct {
	FileName string
	// ContentType is the MIME type. The PUT must send the same value.
	ContentType string
	ParentPath  string
	Size        int64
}

// PresignedUpload is a presigned S3 PUT, valid for one hour.
type PresignedUpload struct {
	URL         string `json:"url"`
	DownloadURL string `json:"download_url"`
	FileID      string `json:"file_id"`
	DBPath      string `json:"db_path"`
	// IsPublic means the URL was signed with ACL public-read, so the PUT
	// must also send "x-amz-acl: public-read".
	IsPublic bool `json:"is_public"`
}

// PresignedURL asks for a direct-to-S3 upload URL
// (GET /assets/presigned-url). Upload with [AssetsService.PutPresigned],
// then call Register. Until then, the asset does not appear in listings.
func (s *AssetsService) PresignedURL(ctx context.Context, req *PresignedURLRequest) (*PresignedUpload, error) {
	if req == nil || req.FileName == "" || req.ContentType == "" {
		return nil, fmt.Errorf("%w: file name and content type are required", ErrInvalidArgument)
	}
	q := url.Values{}
	q.Set("file_name", req.FileName)
	q.Set("type", req.ContentType)
	setStr(q, "parent_path", req.ParentPath)
	if req.Size > 0 {
		q.Set("size", strconv.FormatInt(req.Size, 10))
	}
	return doOne[PresignedUpload](ctx, s.client, http.MethodGet, "/assets/presigned-url", q, nil, callOpts{})
}

// PutPresigned uploads the body to a presigned S3 URL. The API key is not
// sent: the request goes to S3, not to the API. size must be the exact
// length of r. The body is streamed, so the request is not retried.
func (s *AssetsService) PutPresigned(ctx context.Context, up *PresignedUpload, contentType string, r io.Reader, size int64) error {
	if up == nil || up.URL == "" {
		return fmt.Errorf("%w: no presigned URL", ErrInvalidArgument)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, up.URL, r)
	if err != nil {
		return fmt.Errorf("%w: presigned URL: %v", ErrInvalidArgument, err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", contentType)
	if up.IsPublic {
		req.Header.Set("x-amz-acl", "public-read")
	}
	// The signed query string is a credential too, so errors carry only
	// the host and path.
	label := req.URL.Host + req.URL.EscapedPath()
	resp, err := s.client.httpClient.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return s.client.transportErr(http.MethodPut, label, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return s.client.newAPIError(resp, http.MethodPut, label, quirkNone)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.Body.Close()
}

// RegisterAssetRequest records an asset uploaded with a presigned PUT.
// Every field is required. Take them from the [PresignedUpload].
type RegisterAssetRequest struct {
	FileID   string `json:"file_id"`
	FileName string `json:"file_name"`
	FileSize int64  `json:"file_size"`
	DBPath   string `json:"db_path"`
	URL      string `json:"url"`
	MimeType string `json:"mime_type"`
}

// Register records an uploaded asset (POST /assets/register).
func (s *AssetsService) Register(ctx context.Context, req *RegisterAssetRequest) (*Asset, error) {
	if req == nil || req.FileID == "" || req.FileName == "" || req.DBPath == "" || req.URL == "" || req.MimeType == "" {
		return nil, fmt.Errorf("%w: file_id, file_name, db_path, url and mime_type are required", ErrInvalidArgument)
	}
	return doOne[Asset](ctx, s.client, http.MethodPost, "/assets/register", nil, req, callOpts{})
}

// AddByURL registers an external file as an asset in folder path
// (POST /assets/add). The server sends a HEAD request to check the size
// (at most 250 MB) and the MIME type.
func (s *AssetsService) AddByURL(ctx context.Context, fileURL, path string) (*Asset, error) {
	if fileURL == "" {
		return nil, fmt.Errorf("%w: url is empty", ErrInvalidArgument)
	}
	if path == "" {
		path = "/"
	}
	body := struct {
		URL  string `json:"url"`
		Path string `json:"path"`
	}{fileURL, path}
	return doOne[Asset](ctx, s.client, http.MethodPost, "/assets/add", nil, body, callOpts{})
}

// Move moves an asset to an existing folder (PATCH /assets/{id} with
// {"path"}). The API has no asset rename. Folders cannot be moved (400),
// and a missing target folder gives 404. The target is absolute, so the
// request is retried.
func (s *AssetsService) Move(ctx context.Context, id, path string) (*Asset, error) {
	p, err := escapeID("asset id", id)
	if err != nil {
		return nil, err
	}
	body := struct {
		Path string `json:"path"`
	}{path}
	return doOne[Asset](ctx, s.client, http.MethodPatch, "/assets/"+p, nil, body, callOpts{idempotent: true})
}

// Delete deletes an asset (DELETE /assets/{id}). For a file it removes the
// S3 object. For a folder it only removes the database rows of its
// children.
func (s *AssetsService) Delete(ctx context.Context, id string) error {
	p, err := escapeID("asset id", id)
	if err != nil {
		return err
	}
	return s.client.call(ctx, http.MethodDelete, "/assets/"+p, nil, nil, nil, callOpts{idempotent: true})
}

// Search finds assets by name (GET /assets/search). The server's default
// limit is 5.
func (s *AssetsService) Search(ctx context.Context, query string, limit int) ([]Asset, error) {
	q := url.Values{}
	q.Set("query", query)
	setInt(q, "limit", limit)
	return getList[Asset](ctx, s.client, "/assets/search", q)
}
