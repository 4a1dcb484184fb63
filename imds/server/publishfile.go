package server

// The publish directory's side in the server. Watching DIR/<id>.json,
// reading it safely and moving it to done/ or rejected/ is
// imds/publishdir's; here a decoded publish file is validated as the admin
// API validates a registration and a document, and applied through
// Server.apply as one store change.

import (
	"context"

	"github.com/prewarm/prewarm/imds/publishdir"
	"github.com/prewarm/prewarm/imds/store"
	"github.com/prewarm/prewarm/shared/api"
	"github.com/prewarm/prewarm/shared/config"
)

// maxPublishFileBytes bounds a publish file: a full document plus a large
// registration.
const maxPublishFileBytes = config.MaxDocumentBytes + maxRegistrationBytes

func (s *Server) startPublishDir(dir string) (*publishdir.Dir, error) {
	rejects := s.m.rejects.WithLabelValues("publish-dir")
	return publishdir.Start(publishdir.Options{
		Path:         dir,
		MaxFileBytes: maxPublishFileBytes,
		Apply:        s.applyPublishFile,
		OnReject:     rejects.Inc,
		Logger:       s.log,
	})
}

// applyPublishFile applies a publish file (PROTOCOL.md section 3) as one
// store change; its errors are the admin API's *Error.
func (s *Server) applyPublishFile(ctx context.Context, id string, f api.PublishFile) (int64, error) {
	c, e := publishChange(f)
	if e != nil {
		return 0, e
	}
	rec, _, err := s.apply(ctx, id, c)
	if err != nil {
		return 0, storeError(id, err)
	}
	return rec.Generation, nil
}

// publishChange validates a decoded publish file as the admin API
// validates a registration and a document, and turns it into one change.
func publishChange(pf api.PublishFile) (store.Change, *Error) {
	var c store.Change
	if len(pf.Addresses) > 0 || pf.HostInterface != "" {
		reg, e := checkRegistration(api.Registration{Addresses: pf.Addresses, HostInterface: pf.HostInterface, Labels: pf.Labels})
		if e != nil {
			return c, e
		}
		c.Register = &reg
	}
	if len(pf.Config) > 0 && string(pf.Config) != "null" {
		doc, e := decodeConfig(pf.Config)
		if e != nil {
			return c, e
		}
		c.Publish = stamper(doc)
	}
	return c, nil
}
