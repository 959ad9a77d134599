package registry

import (
	"net/http"
)

// Registry modes, as in Confluent's registry.
const (
	// ModeReadWrite accepts registrations and assigns ids itself (the
	// default).
	ModeReadWrite = "READWRITE"
	// ModeReadOnly refuses every change to the subjects it applies to.
	ModeReadOnly = "READONLY"
	// ModeImport accepts registrations that carry their own id and version,
	// to copy a registry's contents into another one with the same ids. The
	// id sequence then continues above the highest imported id.
	ModeImport = "IMPORT"
)

// Modes lists the modes the registry accepts.
var Modes = []string{ModeReadWrite, ModeReadOnly, ModeImport}

// Confluent error codes of the mode API.
const (
	codeSubjectModeNotSet = 40409
	codeInvalidMode       = 42204
	codeNotPermitted      = 42205
)

// modeRequest is the body of a mode request and answer.
type modeRequest struct {
	Mode string `json:"mode"`
}

func parseMode(req *http.Request) (string, error) {
	return parseChoice(req, "mode", "mode", codeInvalidMode, Modes)
}

// globalMode returns the registry-wide mode; the caller holds r.mu.
func (r *Registry) globalMode() string {
	if r.st.Mode == "" {
		return ModeReadWrite
	}
	return r.st.Mode
}

// modeOf returns the mode that applies to a subject: its own, or the
// registry's; the caller holds r.mu.
func (r *Registry) modeOf(subject string) string {
	if s, ok := r.st.Subjects[subject]; ok && s.Mode != "" {
		return s.Mode
	}
	return r.globalMode()
}

// writable refuses a change to subject in READONLY mode; the caller holds
// r.mu.
func (r *Registry) writable(subject string) error {
	if r.modeOf(subject) == ModeReadOnly {
		return errf(http.StatusUnprocessableEntity, codeNotPermitted, "Subject %s is in read-only mode", subject)
	}
	return nil
}

func (r *Registry) getGlobalMode(*http.Request) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return modeRequest{Mode: r.globalMode()}, nil
}

// putGlobalMode sets the registry's mode. As in Confluent's registry,
// IMPORT is refused while subjects exist unless ?force=true: importing
// ids into a registry that assigns its own risks two schemas claiming one.
func (r *Registry) putGlobalMode(req *http.Request) (any, error) {
	mode, err := parseMode(req)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if mode == ModeImport && r.globalMode() != ModeImport && !boolParam(req, "force") && r.hasLiveSubjects() {
		return nil, errf(http.StatusUnprocessableEntity, codeNotPermitted,
			"Cannot import since found existing subjects (use force=true to import into a registry that has some)")
	}
	r.st.Mode = mode
	return modeRequest{Mode: mode}, r.save()
}

// hasLiveSubjects reports whether any subject has a version; the caller
// holds r.mu.
func (r *Registry) hasLiveSubjects() bool {
	for _, s := range r.st.Subjects {
		if len(s.live()) > 0 {
			return true
		}
	}
	return false
}

func (r *Registry) getSubjectMode(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.st.Subjects[name]; ok && s.Mode != "" {
		return modeRequest{Mode: s.Mode}, nil
	}
	if boolParam(req, "defaultToGlobal") {
		return modeRequest{Mode: r.globalMode()}, nil
	}
	return nil, errf(http.StatusNotFound, codeSubjectModeNotSet, "Subject '%s' does not have subject-level mode configured", name)
}

func (r *Registry) putSubjectMode(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	mode, err := parseMode(req)
	if err != nil {
		return nil, err
	}
	return modeRequest{Mode: mode}, r.setSubject(name, func(s *subjectRecord) { s.Mode = mode })
}

// deleteSubjectMode removes a subject's own mode, so the registry's
// applies again, and returns the mode it had.
func (r *Registry) deleteSubjectMode(req *http.Request) (any, error) {
	name := req.PathValue("subject")
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.st.Subjects[name]
	if !ok || s.Mode == "" {
		return nil, errf(http.StatusNotFound, codeSubjectModeNotSet, "Subject '%s' does not have subject-level mode configured", name)
	}
	old := s.Mode
	s.Mode = ""
	if len(s.Versions) == 0 && s.Compatibility == "" {
		delete(r.st.Subjects, name)
	}
	return modeRequest{Mode: old}, r.save()
}
