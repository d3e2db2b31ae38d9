package outputstore

import (
	"fmt"
	"testing"

	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
)

func TestStripQueriesKeepsTheMessageAroundURLs(t *testing.T) {
	msg := `request send failed, Put "http://127.0.0.1:9/media/x?x-id=PutObject&X-Amz-Signature=abc": dial tcp`
	assert.Equal(t, `request send failed, Put "http://127.0.0.1:9/media/x": dial tcp`, stripQueries(msg, ""))
}

func TestHintNamesCredentialsForRefusedSignatures(t *testing.T) {
	err := fmt.Errorf("write a probe object: %w", &smithy.GenericAPIError{Code: "SignatureDoesNotMatch", Message: "signature mismatch"})
	assert.Contains(t, hint(err).Error(), "check the storage credentials")
	assert.Equal(t, "plain", hint(fmt.Errorf("plain")).Error())
}
