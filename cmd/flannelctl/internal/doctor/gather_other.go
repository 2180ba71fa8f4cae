//go:build !linux

package doctor

import "errors"

func gatherKernel(Request) Facts {
	return Facts{KernelErr: errors.New("reading the kernel state needs Linux")}
}
