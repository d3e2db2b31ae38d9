package activities

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/outputstore"
	"github.com/durable-comfy/durable-comfy/preflight"
)

// Application error types raised by the activities, besides the preflight
// rejection kinds (preflight.Kind*). Callers match on them, so keep them stable.
const (
	ErrTypeUnauthorized      = "Unauthorized"           // the worker's API key is missing, invalid or revoked
	ErrTypeForbidden         = "Forbidden"              // credits exhausted, account suspended, token scope
	ErrTypeRejectedByAPI     = "RejectedByAPI"          // 400/404/422 on submit: repeating the request cannot help
	ErrTypeRunNotFound       = "RunNotFound"            // a run id we recorded is unknown to ComfyDeploy
	ErrTypeOutputTooLarge    = "OutputTooLarge"         // an output exceeds the worker's size cap
	ErrTypeOutputURLExpired  = "OutputURLExpired"       // retried: the activity re-reads the run for fresh URLs
	ErrTypeOutputURLRefused  = "OutputURLRefused"       // an output URL points at an internal address the worker may not fetch
	ErrTypeInvalidRequest    = "InvalidRequest"         // the activity input itself is malformed
	ErrTypeComfyUnavailable  = "ComfyUnavailable"       // retryable: network errors and 5xx
	ErrTypeSubmitUnconfirmed = "SubmitUnconfirmed"      // retryable: outcome unknown, next attempt looks the token up first
	ErrTypeStoreUnavailable  = "OutputStoreUnavailable" // retryable: the output store is down, throttling or refusing
)

// classify turns a comfy client error into the application error the
// workflow sees. what names the operation for the message.
func classify(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var classified *temporal.ApplicationError
	if errors.As(err, &classified) {
		return err // classified where its cause was known
	}
	var rej *preflight.Rejection
	if errors.As(err, &rej) {
		return temporal.NewNonRetryableApplicationError(rej.Error(), rej.Kind, nil, rej.Problems)
	}
	msg := fmt.Sprintf("%s: %v", what, err)
	switch {
	case comfy.IsUnauthorized(err):
		return temporal.NewNonRetryableApplicationError(msg+"; check COMFY_API_KEY in the worker configuration", ErrTypeUnauthorized, nil)
	case comfy.IsForbidden(err):
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeForbidden, nil)
	case comfy.IsRetryable(err):
		return temporal.NewApplicationError(msg, ErrTypeComfyUnavailable)
	default:
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeRejectedByAPI, nil)
	}
}

// classifyStore turns an output store error into the application error the
// workflow sees. A store that is down, throttling or (for a while) refusing
// is retried: the workflow's retry policy backs off, and the run's outputs
// are safe at the provider meanwhile. Only a key the store can never accept
// is final. Application errors raised on the way (a malformed results
// part) keep their own classification.
func classifyStore(what string, err error) error {
	if err == nil {
		return nil
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	msg := fmt.Sprintf("%s: %v", what, err)
	if errors.Is(err, outputstore.ErrInvalidKey) {
		return temporal.NewNonRetryableApplicationError(msg, ErrTypeInvalidRequest, nil)
	}
	return temporal.NewApplicationError(msg, ErrTypeStoreUnavailable)
}
