package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/durable-comfy/durable-comfy/outputstore"
)

const linkHelp = `Prints a time-limited HTTPS link for each output store URL (s3://…, gs://…,
azblob://…), as status, batch and pipeline reports print them, so that a
person or program without storage credentials can fetch the object.

The store comes from this process's environment, as for the worker:
COMFY_OUTPUT_URL (the same value the workers use), and the storage SDK's
standard credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
GOOGLE_APPLICATION_CREDENTIALS, …). Signing happens locally, without a call
to the store. Local directory stores (file://) cannot sign; their URLs are
files on the worker's host.`

// maxLinkTTL is the longest lifetime S3 accepts for a presigned URL.
const maxLinkTTL = 7 * 24 * time.Hour

func cmdLink(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "link", "[-expires 1h] URL...", linkHelp)
	expires := fs.Duration("expires", time.Hour, "how long each link stays valid (at most 168h)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageErrorf("link needs at least one store URL (as printed by status, batch status or pipeline status)")
	}
	if *expires <= 0 || *expires > maxLinkTTL {
		return usageErrorf("-expires %s must be positive and at most %s", *expires, maxLinkTTL)
	}
	raw := e.getenv("COMFY_OUTPUT_URL")
	if raw == "" {
		return usageErrorf("set COMFY_OUTPUT_URL to the output store the workers use (for example s3://bucket/prefix?region=eu-west-1)")
	}
	store, err := outputstore.Open(ctx, raw)
	if err != nil {
		return usageErrorf("COMFY_OUTPUT_URL: %v", err)
	}
	defer store.Close()
	for _, u := range pos {
		key, ok := store.KeyForURL(u)
		if !ok {
			return usageErrorf("%s is not an object of the output store %s (COMFY_OUTPUT_URL)", outputstore.Redact(u), store.URL())
		}
		link, err := store.SignedURL(ctx, key, *expires)
		if errors.Is(err, outputstore.ErrCannotSign) {
			return usageErrorf("%v; fetch %s from the worker's host instead", err, u)
		}
		if err != nil {
			return fmt.Errorf("sign %s: %w", u, err)
		}
		fmt.Fprintln(e.stdout, link)
	}
	return nil
}
