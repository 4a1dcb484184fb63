package server

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prewarm/prewarm/shared/api"
)

// A parked guest long-poll on an HTTP/1 connection is hijacked from
// net/http and kept as a parkedPoll: the connection, what the guest already
// has, and a timer. It holds no goroutine and none of net/http's
// per-connection buffers, so 10,000 parked polls cost a few MB instead of
// two goroutines and ~20 KB each. A publish answers every fresh poll of its
// instance with one shared response, written by a few workers. A 200 or
// 304 answer keeps the connection alive, as HTTP/1.1 allows: it goes back
// to net/http (requeue.go) and the guest's next poll comes on it. A 404
// (the instance is gone), an answer at shutdown, and a poll whose guest
// pipelined more after it carry `Connection: close` instead.
//
// Where the writer cannot be hijacked (HTTP/2, httptest.ResponseRecorder)
// the handler waits in its goroutine instead (guestConfig).
type parkedPoll struct {
	conn  net.Conn
	cond  pollCond
	timer *time.Timer
	seq   uint64 // parking order within the instance
	// unwatch stops the peer watch (nil without one); answerPoll calls it
	// before closing conn.
	unwatch func()
	// requeue gives conn back to net/http once answered (nil: close it).
	requeue func(net.Conn)
}

// DefaultMaxParked bounds the parked long-polls of one instance; an agent
// has one.
const DefaultMaxParked = 64

// pollCond is what a poll already has: its If-None-Match, if it sent one.
type pollCond struct {
	inm    api.IfNoneMatch
	hasINM bool
}

// fresh reports whether sn answers a poll with this condition: a
// document exists and the poll's tag does not name it
// (api.IfNoneMatch.Matches: a tag of another epoch never does; one of this
// epoch ahead of the document, a guest of a store restored from an older
// backup, does until a publish numbered past it, which noteAhead makes
// sure of).
func (c pollCond) fresh(sn *snapshot) bool {
	return sn.doc != nil && (!c.hasINM || !c.inm.Matches(api.ETag{Generation: sn.generation, Epoch: sn.epoch}))
}

// parkHijacked parks the poll without a goroutine. It returns false, having
// done nothing, when w cannot be hijacked.
func (s *Server) parkHijacked(w http.ResponseWriter, r *http.Request, inst *instance, cond pollCond, timeout time.Duration) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	if sw, ok := w.(*statusWriter); ok {
		sw.hijacked = true
	}
	conn.SetDeadline(time.Time{})
	p := &parkedPoll{conn: conn, cond: cond}
	// Anything the guest pipelined after this request is dropped: the
	// answer then closes the connection, as it does for a guest that
	// asked for that (or spoke HTTP/1.0).
	if gc, ok := r.Context().Value(guestConnKey{}).(*guestConn); ok && gc.rl != nil && brw.Reader.Buffered() == 0 && r.ProtoAtLeast(1, 1) && !r.Close {
		p.requeue = gc.rl.requeue
	}
	s.m.parkedGuest.Inc()
	inst.pollMu.Lock()
	sn := inst.cur.Load()
	switch {
	case sn.deleted:
		inst.pollMu.Unlock()
		s.answerPolls([]*parkedPoll{p}, unknownInstanceResponse(), http.StatusNotFound)
	case cond.fresh(sn):
		inst.pollMu.Unlock()
		s.answerPolls([]*parkedPoll{p}, docResponse(sn), http.StatusOK)
	case s.closing.Load():
		inst.pollMu.Unlock()
		s.answerPolls([]*parkedPoll{p}, notModifiedResponse(sn), http.StatusNotModified)
	default:
		var evicted *parkedPoll
		if max := s.opts.MaxParkedPerInstance; max > 0 && len(inst.polls) >= max {
			for q := range inst.polls {
				if evicted == nil || q.seq < evicted.seq {
					evicted = q
				}
			}
			delete(inst.polls, evicted)
			evicted.timer.Stop()
		}
		inst.pollSeq++
		p.seq = inst.pollSeq
		if s.peers != nil {
			// Registered before p is visible to anyone who could answer it.
			if uw, err := s.peers.Watch(conn, func() { s.peerGone(inst, p) }); err == nil {
				p.unwatch = uw
			} else {
				s.log.Debug("cannot watch a parked connection", "err", err)
			}
		}
		inst.polls[p] = struct{}{}
		p.timer = time.AfterFunc(timeout, func() { s.expire(inst, p) })
		inst.pollMu.Unlock()
		if evicted != nil {
			s.m.parkEvicted.Inc()
			s.answerPolls([]*parkedPoll{evicted}, notModifiedResponse(sn), http.StatusNotModified)
		}
	}
	return true
}

// unpark takes p out of inst's parked polls and returns the snapshot to
// answer it with, or false when something answered it first.
func (inst *instance) unpark(p *parkedPoll) (*snapshot, bool) {
	inst.pollMu.Lock()
	defer inst.pollMu.Unlock()
	if _, ok := inst.polls[p]; !ok {
		return nil, false
	}
	delete(inst.polls, p)
	return inst.cur.Load(), true
}

// expire answers p 304 at its timeout unless something answered it first.
func (s *Server) expire(inst *instance, p *parkedPoll) {
	sn, ok := inst.unpark(p)
	if !ok {
		return
	}
	s.answerPolls([]*parkedPoll{p}, notModifiedResponse(sn), http.StatusNotModified)
}

// peerGone releases p when its guest closed the connection while parked.
func (s *Server) peerGone(inst *instance, p *parkedPoll) {
	sn, ok := inst.unpark(p)
	if !ok {
		return
	}
	p.timer.Stop()
	s.m.peerGone.Inc()
	// A guest that only half-closed still gets a proper answer.
	s.answerPolls([]*parkedPoll{p}, notModifiedResponse(sn), http.StatusNotModified)
}

// wake answers inst's parked polls that its current snapshot satisfies
// (all of them when it was deleted).
func (s *Server) wake(inst *instance) {
	inst.pollMu.Lock()
	sn := inst.cur.Load()
	var ready []*parkedPoll
	for p := range inst.polls {
		if sn.deleted || p.cond.fresh(sn) {
			ready = append(ready, p)
			delete(inst.polls, p)
		}
	}
	inst.pollMu.Unlock()
	if len(ready) == 0 {
		return
	}
	for _, p := range ready {
		p.timer.Stop()
	}
	// Never write on the caller's goroutine: it is the store's feed, which
	// a publish waits for, and a guest that stops reading must not stall
	// publishes.
	resp, code := docResponse(sn), http.StatusOK
	if sn.deleted {
		resp, code = unknownInstanceResponse(), http.StatusNotFound
	}
	if len(ready) <= inlinePolls {
		go s.answerPolls(ready, resp, code)
		return
	}
	s.answerPolls(ready, resp, code)
}

// drainPolls answers every parked poll 304 (shutdown) and returns a
// channel closed when all answers are written. Callers have set s.closing,
// so no poll parks after its instance is drained.
func (s *Server) drainPolls() <-chan struct{} {
	s.mu.RLock()
	insts := make([]*instance, 0, len(s.byID))
	for _, inst := range s.byID {
		insts = append(insts, inst)
	}
	s.mu.RUnlock()
	var wg sync.WaitGroup
	for _, inst := range insts {
		inst.pollMu.Lock()
		ready := make([]*parkedPoll, 0, len(inst.polls))
		for p := range inst.polls {
			p.timer.Stop()
			ready = append(ready, p)
		}
		clear(inst.polls)
		sn := inst.cur.Load()
		inst.pollMu.Unlock()
		if len(ready) > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.answerPolls(ready, notModifiedResponse(sn), http.StatusNotModified)
			}()
		}
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}

// inlinePolls is how many answers one goroutine writes; more are spread
// over a few workers.
const inlinePolls = 16

// answerTimeout bounds writing one answer to a guest that does not read.
const answerTimeout = 5 * time.Second

// answerPolls writes resp to every poll and closes its connection, or,
// for a 200 or 304 on a connection that can go on, writes resp without its
// `Connection: close` and gives the connection back to net/http. Small
// batches are written by the calling goroutine; large ones by up to
// 2×GOMAXPROCS workers, not waited for.
func (s *Server) answerPolls(ps []*parkedPoll, resp []byte, code int) {
	var alive []byte
	if code != http.StatusNotFound {
		alive = bytes.Replace(resp, []byte(connClose), nil, 1)
	}
	if len(ps) <= inlinePolls {
		for _, p := range ps {
			s.answerPoll(p, resp, alive, code)
		}
		return
	}
	workers := min(2*runtime.GOMAXPROCS(0), len(ps)/inlinePolls)
	per := (len(ps) + workers - 1) / workers
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < len(ps); i += per {
		part := ps[i:min(i+per, len(ps))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, p := range part {
				s.answerPoll(p, resp, alive, code)
			}
		}()
	}
	go func() {
		wg.Wait()
		s.log.Debug("long-polls answered", "polls", len(ps), "status", code, "workers", workers, "took", time.Since(start))
	}()
}

func (s *Server) answerPoll(p *parkedPoll, resp, alive []byte, code int) {
	if p.unwatch != nil {
		p.unwatch()
	}
	keep := alive != nil && p.requeue != nil && !s.closing.Load()
	if keep {
		resp = alive
	}
	p.conn.SetWriteDeadline(time.Now().Add(answerTimeout))
	_, err := p.conn.Write(resp)
	if err != nil {
		s.log.Debug("long-poll answer not delivered", "remote", p.conn.RemoteAddr().String(), "err", err)
	}
	if keep && err == nil {
		p.conn.SetDeadline(time.Time{})
		p.requeue(p.conn)
	} else {
		p.conn.Close()
	}
	s.m.parkedGuest.Dec()
	s.m.request("guest", api.PathConfig, code)
}

// Raw HTTP/1.1 answers of hijacked polls.

// connClose is the header line answerPolls drops from an answer that
// keeps its connection.
const connClose = "Connection: close\r\n"

func head(b *bytes.Buffer, status string) {
	b.WriteString("HTTP/1.1 ")
	b.WriteString(status)
	b.WriteString("\r\n" + connClose + "Date: ")
	b.WriteString(time.Now().UTC().Format(http.TimeFormat))
	b.WriteString("\r\n")
}

func docResponse(sn *snapshot) []byte {
	var b bytes.Buffer
	b.Grow(len(sn.doc) + 256)
	head(&b, "200 OK")
	fmt.Fprintf(&b, "Cache-Control: no-store\r\nContent-Type: %s\r\nEtag: %s\r\nContent-Length: %d\r\n\r\n", api.ContentTypeJSON, sn.etag[0], len(sn.doc))
	b.Write(sn.doc)
	return b.Bytes()
}

func notModifiedResponse(sn *snapshot) []byte {
	var b bytes.Buffer
	head(&b, "304 Not Modified")
	if sn.etag != nil {
		b.WriteString("Etag: " + sn.etag[0] + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

func unknownInstanceResponse() []byte {
	body := `{"error":"unknown instance"}` + "\n"
	var b bytes.Buffer
	head(&b, "404 Not Found")
	b.WriteString("Content-Type: " + api.ContentTypeJSON + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	return b.Bytes()
}
