package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/egress"
	"github.com/durable-comfy/durable-comfy/outputstore"
)

// ErrTypeBatchSourceRefused is the application error type for a batch
// source the worker's configuration does not let workflows read: a path
// outside COMFY_SOURCE_DIRS, a non-regular file, a URL on an internal
// address or with a scheme other than http(s). Not retried.
const ErrTypeBatchSourceRefused = "BatchSourceRefused"

// SourceDirs are the directories below which path sources are read. Each is
// opened as an os.Root, so a symlink or ".." cannot lead out of it, however
// the path is spelled.
type SourceDirs struct {
	roots []sourceRoot
}

type sourceRoot struct {
	dir  string // absolute and clean
	root *os.Root
}

// OpenSourceDirs opens the given directories (relative ones against the
// working directory). An empty list gives SourceDirs that refuse every path.
func OpenSourceDirs(dirs []string) (*SourceDirs, error) {
	d := &SourceDirs{}
	for _, dir := range dirs {
		if dir = strings.TrimSpace(dir); dir == "" {
			continue
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			d.Close()
			return nil, err
		}
		root, err := os.OpenRoot(abs)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("source directory %s: %w", dir, err)
		}
		d.roots = append(d.roots, sourceRoot{dir: abs, root: root})
	}
	return d, nil
}

// Close closes the directories.
func (d *SourceDirs) Close() error {
	if d == nil {
		return nil
	}
	var errs []error
	for _, r := range d.roots {
		errs = append(errs, r.root.Close())
	}
	return errors.Join(errs...)
}

// Dirs lists the directories, for logs and messages.
func (d *SourceDirs) Dirs() []string {
	if d == nil {
		return nil
	}
	out := make([]string, len(d.roots))
	for i, r := range d.roots {
		out[i] = r.dir
	}
	return out
}

func refused(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), ErrTypeBatchSourceRefused, nil)
}

// open opens a path source for reading. The path means what it always
// meant (absolute, or relative to the worker's working directory) and must
// lie below one of the directories; it is then opened through that
// directory's os.Root. Only regular files are opened, and never in a way
// that blocks on a FIFO.
func (d *SourceDirs) open(name string) (*os.File, error) {
	if d == nil || len(d.roots) == 0 {
		return nil, refused("batch source %s: this worker reads no path sources; set COMFY_SOURCE_DIRS on the worker to the directories batch files may be read from, or give the source as a url", name)
	}
	for _, elem := range strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == filepath.Separator }) {
		if elem == ".." {
			return nil, refused("batch source %s: a path must not contain \"..\"; name the file below a source directory (%s)", name, strings.Join(d.Dirs(), ", "))
		}
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		return nil, refused("batch source %s: %v", name, err)
	}
	for _, r := range d.roots {
		rel, err := filepath.Rel(r.dir, abs)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			continue
		}
		return openRegular(r, rel, name)
	}
	return nil, refused("batch source %s is outside the worker's source directories (%s, COMFY_SOURCE_DIRS); relative paths start at the worker's working directory", name, strings.Join(d.Dirs(), ", "))
}

func openRegular(r sourceRoot, rel, name string) (*os.File, error) {
	info, err := r.root.Stat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("batch source %s does not exist on the worker (relative paths start at the worker's working directory)", name), ErrTypeBatchSource, nil)
	}
	if err != nil {
		// os.Root refuses symlinks (and "..") that lead out of the root.
		return nil, refused("batch source %s cannot be read inside %s: %v", name, r.dir, pathErr(err))
	}
	if !info.Mode().IsRegular() {
		return nil, refused("batch source %s is not a regular file (%s); name a .csv or .jsonl file", name, fileKind(info.Mode()))
	}
	// O_NONBLOCK: if the file was swapped for a FIFO since the Stat, the
	// open returns at once instead of waiting for a writer; Stat below
	// catches it.
	f, err := r.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, refused("batch source %s cannot be opened: %v", name, pathErr(err))
	}
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		f.Close()
		return nil, refused("batch source %s is not a regular file", name)
	}
	return f, nil
}

// pathErr drops the operation and path of a *fs.PathError, which repeat
// what the message already says.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.String()
}

// openSource returns the source's bytes from offset on. It is the one place
// that knows the kinds of sources.
func (a *Activities) openSource(ctx context.Context, src BatchSource, offset int64) (io.ReadCloser, error) {
	switch {
	case src.Path != "":
		f, err := a.SourceDirs.open(src.Path)
		if err != nil {
			return nil, err
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("seek batch source %s: %w", src.Path, err)
		}
		return f, nil
	case strings.HasPrefix(src.URL, "http://") || strings.HasPrefix(src.URL, "https://"):
		return a.fetchSource(ctx, src.URL, offset)
	default:
		return a.readStoredSource(ctx, src.URL, offset)
	}
}

// readStoredSource reads an object of the worker's output store from
// offset on with a ranged read. Only the configured store is read: its
// credentials are the worker's, and a workflow input must not be able to
// point them at another bucket.
func (a *Activities) readStoredSource(ctx context.Context, rawURL string, offset int64) (io.ReadCloser, error) {
	shown := outputstore.Redact(rawURL)
	store, ok := a.Store.(outputstore.URLReader)
	var key string
	if ok {
		key, ok = store.KeyForURL(rawURL)
	}
	if !ok {
		return nil, refused("batch source url %s is not inside this worker's output store (COMFY_OUTPUT_URL); object-store sources are read from that store only", shown)
	}
	r, err := store.OpenRange(ctx, key, offset)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("batch source %s does not exist in the output store", shown), ErrTypeBatchSource, nil)
	}
	if err != nil {
		return nil, classifyStore("read batch source "+shown, err)
	}
	return r, nil
}

// fetchSource GETs a URL source from offset on through SourceClient.
func (a *Activities) fetchSource(ctx context.Context, rawURL string, offset int64) (io.ReadCloser, error) {
	shown := egress.Redacted(rawURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError("batch source url "+shown+" is not a valid URL", ErrTypeInvalidRequest, nil)
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	client := a.SourceClient
	if client == nil {
		client = defaultEgress
	}
	resp, err := client.Do(req)
	var refusal *egress.RefusedError
	if errors.As(err, &refusal) {
		return nil, refused("batch source url %s refused: %s (allow a host with COMFY_SOURCE_URL_ALLOW)", shown, refusal)
	}
	if err != nil {
		return nil, temporal.NewApplicationError(fmt.Sprintf("fetch batch source %s: %v", shown, stripURLs(err)), ErrTypeComfyUnavailable)
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent:
		return resp.Body, nil
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		resp.Body.Close()
		return io.NopCloser(strings.NewReader("")), nil // the cursor is at the end
	case resp.StatusCode == http.StatusOK:
		if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil && !errors.Is(err, io.EOF) {
			resp.Body.Close()
			return nil, temporal.NewApplicationError(fmt.Sprintf("fetch batch source %s: %v", shown, err), ErrTypeComfyUnavailable)
		}
		return resp.Body, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		resp.Body.Close()
		return nil, temporal.NewApplicationError(fmt.Sprintf("fetch batch source %s: %s", shown, resp.Status), ErrTypeComfyUnavailable)
	default:
		resp.Body.Close()
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("fetch batch source %s: %s", shown, resp.Status), ErrTypeBatchSource, nil)
	}
}

// defaultEgress serves Activities without a configured client: public
// addresses only.
var defaultEgress = egress.NewClient(egress.Policy{})
