package service

import (
	"errors"
	"log/slog"
	"reflect"
	"testing"
	"time"
)

type event struct {
	kind string
	eid  uint32
	msg  string
}

type fakeLog struct{ events []event }

func (f *fakeLog) Info(eid uint32, msg string) error {
	f.events = append(f.events, event{"info", eid, msg})
	return nil
}
func (f *fakeLog) Warning(eid uint32, msg string) error {
	f.events = append(f.events, event{"warning", eid, msg})
	return nil
}
func (f *fakeLog) Error(eid uint32, msg string) error {
	f.events = append(f.events, event{"error", eid, msg})
	return errors.New("event log full")
}

func TestEventLogHandler(t *testing.T) {
	f := &fakeLog{}
	log := slog.New(NewEventLogHandler(f, nil)).With("component", "agent")
	log.Debug("not shown")
	log.Info("config applied", "generation", 4)
	log.WithGroup("step").Warn("user failed", "user", "alice")
	log.Error("apply failed", "err", "boom")
	want := []event{
		{"info", EventInfo, "config applied component=agent generation=4"},
		{"warning", EventWarning, "user failed component=agent step.user=alice"},
		{"error", EventError, "apply failed component=agent err=boom"},
	}
	if !reflect.DeepEqual(f.events, want) {
		t.Errorf("events:\n%+v\nwant\n%+v", f.events, want)
	}
	h := NewEventLogHandler(f, &slog.HandlerOptions{Level: slog.LevelWarn})
	if err := slog.New(h).Handler().Handle(t.Context(), slog.NewRecord(time.Time{}, slog.LevelError, "x", 0)); err == nil {
		t.Error("Handle swallowed the event log's error")
	}
	if h.Enabled(t.Context(), slog.LevelInfo) {
		t.Error("Info enabled at level Warn")
	}
}

func TestKardianosOptions(t *testing.T) {
	o := KardianosOptions()
	if o["StartType"] != "automatic" || o["OnFailure"] != "restart" {
		t.Errorf("options = %v", o)
	}
}
