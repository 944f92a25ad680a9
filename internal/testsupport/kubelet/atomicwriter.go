// Package kubelet reproduces, for tests, how the kubelet writes and updates
// a ConfigMap or Secret volume: the AtomicWriter of Kubernetes'
// pkg/volume/util/atomic_writer.go, step by step.
//
// A volume directory then holds, for a payload with the key config.yaml:
//
//	..2024_05_01_10_00_00.123456789/config.yaml  the content
//	..data -> ..2024_05_01_10_00_00.123456789     swapped by rename on each update
//	config.yaml -> ..data/config.yaml             created on the first write only
//
// so an update is one rename of ..data, in the volume directory, and the
// file a program opens never changes in place.
package kubelet

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// The kubelet's names in a volume directory.
const (
	DataDir    = "..data"
	DataDirTmp = "..data_tmp"
)

// Step is one step of an update, in the order the kubelet (1.2x and later)
// takes them.
type Step int

// The steps of AtomicWriter.Write.
const (
	// StepTimestampDir: a new ..<timestamp> directory holds the payload.
	StepTimestampDir Step = iota
	// StepDataTmp: the ..data_tmp symlink points at it.
	StepDataTmp
	// StepRenameData: ..data_tmp is renamed over ..data; the update is visible.
	StepRenameData
	// StepCreateUserVisible: each key has its symlink <key> -> ..data/<key>.
	StepCreateUserVisible
	// StepRemoveUserVisible: the symlinks of keys no longer in the payload are gone.
	StepRemoveUserVisible
	// StepRemoveOld: the previous ..<timestamp> directory is removed.
	StepRemoveOld
)

func (s Step) String() string {
	switch s {
	case StepTimestampDir:
		return "timestamp-dir"
	case StepDataTmp:
		return "data-tmp-symlink"
	case StepRenameData:
		return "rename-data"
	case StepCreateUserVisible:
		return "create-user-visible"
	case StepRemoveUserVisible:
		return "remove-user-visible"
	case StepRemoveOld:
		return "remove-old-dir"
	}
	return fmt.Sprintf("Step(%d)", int(s))
}

// AtomicWriter updates the volume directory Dir as the kubelet does. It is
// not safe for concurrent use, and neither is the kubelet's.
type AtomicWriter struct {
	// Dir is the volume directory; Write creates it when missing, as
	// mounting the volume does.
	Dir string
	// OnStep, when set, is called after each step that Write takes.
	OnStep func(Step)
}

// Write makes the volume hold exactly payload: file name to content (file
// names without directories). Like the kubelet, it does nothing when the
// volume already holds exactly payload.
func (w *AtomicWriter) Write(payload map[string][]byte) error {
	for name := range payload {
		if name == "" || name != filepath.Base(name) || name[0] == '.' {
			return fmt.Errorf("payload key %q: want a plain file name not starting with a dot", name)
		}
	}
	if err := os.MkdirAll(w.Dir, 0o755); err != nil {
		return fmt.Errorf("creating the volume directory: %w", err)
	}
	dataDir := filepath.Join(w.Dir, DataDir)
	oldTsName, err := os.Readlink(dataDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", DataDir, err)
	}
	var old map[string][]byte
	if oldTsName != "" {
		if old, err = readDir(filepath.Join(w.Dir, oldTsName)); err != nil {
			return err
		}
		if sameFiles(old, payload) {
			return nil
		}
	}

	tsDir, err := os.MkdirTemp(w.Dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return fmt.Errorf("creating the timestamped directory: %w", err)
	}
	if err := os.Chmod(tsDir, 0o755); err != nil {
		return fmt.Errorf("creating the timestamped directory: %w", err)
	}
	for name, content := range payload {
		if err := os.WriteFile(filepath.Join(tsDir, name), content, 0o644); err != nil {
			return fmt.Errorf("writing the payload: %w", err)
		}
	}
	w.step(StepTimestampDir)

	dataDirTmp := filepath.Join(w.Dir, DataDirTmp)
	if err := os.Symlink(filepath.Base(tsDir), dataDirTmp); err != nil {
		return fmt.Errorf("creating %s: %w", DataDirTmp, err)
	}
	w.step(StepDataTmp)

	if err := os.Rename(dataDirTmp, dataDir); err != nil {
		return fmt.Errorf("renaming %s over %s: %w", DataDirTmp, DataDir, err)
	}
	w.step(StepRenameData)

	for name := range payload {
		visible := filepath.Join(w.Dir, name)
		if _, err := os.Readlink(visible); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("reading the symlink of %s: %w", name, err)
		}
		if err := os.Symlink(filepath.Join(DataDir, name), visible); err != nil {
			return fmt.Errorf("creating the symlink of %s: %w", name, err)
		}
	}
	w.step(StepCreateUserVisible)

	for name := range old {
		if _, ok := payload[name]; !ok {
			if err := os.Remove(filepath.Join(w.Dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("removing the symlink of %s: %w", name, err)
			}
		}
	}
	w.step(StepRemoveUserVisible)

	if oldTsName != "" {
		if err := os.RemoveAll(filepath.Join(w.Dir, oldTsName)); err != nil {
			return fmt.Errorf("removing the old timestamped directory: %w", err)
		}
	}
	w.step(StepRemoveOld)
	return nil
}

func (w *AtomicWriter) step(s Step) {
	if w.OnStep != nil {
		w.OnStep(s)
	}
}

func readDir(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the current payload: %w", err)
	}
	files := make(map[string][]byte, len(entries))
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading the current payload: %w", err)
		}
		files[e.Name()] = b
	}
	return files, nil
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for name, content := range a {
		other, ok := b[name]
		if !ok || !bytes.Equal(content, other) {
			return false
		}
	}
	return true
}
