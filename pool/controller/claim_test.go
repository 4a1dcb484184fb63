package controller

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/prewarm/prewarm/imds/client"
	"github.com/prewarm/prewarm/shared/api"
)

// The IMDS's 400 on a publish becomes the claim's 400 with the document's
// field paths; any other failure is not a refused document.
func TestRefusedDocument(t *testing.T) {
	imds := &client.Error{StatusCode: http.StatusBadRequest, Body: api.Error{Error: "invalid document",
		Fields: []api.FieldError{{Path: "network.interfaces[0].mac", Reason: "must be a MAC"}}}}
	err := refusedDocument(fmt.Errorf("publish: %w", imds))
	var e *Error
	if !errors.As(err, &e) || e.Code != http.StatusBadRequest || len(e.Body.Fields) != 1 ||
		e.Body.Fields[0].Path != "document.network.interfaces[0].mac" || e.Body.Fields[0].Reason != "must be a MAC" {
		t.Fatalf("refusedDocument(400) = %#v", err)
	}
	for _, other := range []error{
		&client.Error{StatusCode: http.StatusPreconditionFailed},
		errors.New("connection refused"),
		nil,
	} {
		if err := refusedDocument(other); err != nil {
			t.Errorf("refusedDocument(%v) = %v, want nil", other, err)
		}
	}
}
