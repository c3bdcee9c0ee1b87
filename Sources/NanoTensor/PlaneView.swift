/// Where a kernel reads or writes one image's channel planes: pixel (0, 0) of channel 0 and the
/// strides between channels and rows. A view into storage someone else owns (a `Tensor`,
/// `PaddedPlanes`, or a per-thread scratch), used only while that owner is held: the fused and
/// the plain kernels address their inputs and outputs through it, so a band routine serves both
/// whether its rows live in whole planes or in a scratch band.
package struct PlaneView {
    package let origin: UnsafeMutablePointer<Float>
    package let planeStride: Int, rowStride: Int

    @inline(__always) package init(_ origin: UnsafeMutablePointer<Float>, planeStride: Int, rowStride: Int) {
        self.origin = origin; self.planeStride = planeStride; self.rowStride = rowStride
    }

    /// Pixel (y, 0) of channel c.
    @inline(__always) package func row(_ c: Int, _ y: Int) -> UnsafeMutablePointer<Float> {
        origin + c * planeStride + y * rowStride
    }

    /// Image i of a tensor.
    @inline(__always) package static func of(_ t: Tensor, image i: Int) -> PlaneView {
        PlaneView(t.plane(i, 0), planeStride: t.shape.plane, rowStride: t.shape.w)
    }
}

extension PaddedPlanes {
    /// Image i's interior: row −1 and column −1 up to the padding are readable.
    @inline(__always) package func view(image i: Int) -> PlaneView {
        PlaneView(origin(i, 0), planeStride: planeStride, rowStride: rowStride)
    }
}
