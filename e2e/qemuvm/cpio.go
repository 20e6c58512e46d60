package qemuvm

import (
	"fmt"
	"io"
)

// newc mode bits.
const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeLink = 0o120000
	modeChar = 0o020000
)

// cpioWriter writes the "newc" (SVR4, no CRC) archive format the kernel
// unpacks as an initramfs.
type cpioWriter struct {
	w     io.Writer
	ino   uint32
	count int64
}

type cpioEntry struct {
	name       string
	mode       uint32 // type and permission bits
	size       int64
	rmaj, rmin uint32 // device numbers for character devices
}

func (c *cpioWriter) header(e cpioEntry) error {
	c.ino++
	nlink := 1
	if e.mode&0o170000 == modeDir {
		nlink = 2
	}
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, e.mode, 0, 0, nlink, 0, e.size, 0, 0, e.rmaj, e.rmin, len(e.name)+1, 0)
	if err := c.write([]byte(h)); err != nil {
		return err
	}
	if err := c.write(append([]byte(e.name), 0)); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.count += int64(n)
	return err
}

// pad aligns to 4 bytes, as newc requires after names and file data.
func (c *cpioWriter) pad() error {
	if r := c.count % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

func (c *cpioWriter) Dir(name string) error {
	return c.header(cpioEntry{name: name, mode: modeDir | 0o755})
}

func (c *cpioWriter) File(name string, perm uint32, data []byte) error {
	if err := c.header(cpioEntry{name: name, mode: modeFile | perm, size: int64(len(data))}); err != nil {
		return err
	}
	if err := c.write(data); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) Symlink(name, target string) error {
	if err := c.header(cpioEntry{name: name, mode: modeLink | 0o777, size: int64(len(target))}); err != nil {
		return err
	}
	if err := c.write([]byte(target)); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) CharDev(name string, perm, major, minor uint32) error {
	return c.header(cpioEntry{name: name, mode: modeChar | perm, rmaj: major, rmin: minor})
}

// Close writes the trailer entry.
func (c *cpioWriter) Close() error {
	return c.header(cpioEntry{name: "TRAILER!!!"})
}
