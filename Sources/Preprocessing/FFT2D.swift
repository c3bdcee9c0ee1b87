import CFFTW
import Foundation

/// Two-dimensional discrete Fourier transforms of complex images through FFTW (single
/// precision). Values are interleaved (re, im) pairs, row-major; `inverse` does not divide by
/// the pixel count (FFTW's convention), `inverseNormalised` does. Plans are made with
/// FFTW_ESTIMATE (no timing runs) and are not shared between threads.
public final class FFT2D {
    public let width: Int
    public let height: Int
    let buffer: UnsafeMutablePointer<fftwf_complex>
    let forwardPlan: fftwf_plan
    let inversePlan: fftwf_plan
    /// FFTW's planner is not thread-safe.
    static let planning = NSLock()

    public init(width: Int, height: Int) {
        self.width = width; self.height = height
        buffer = fftwf_alloc_complex(width * height)
        FFT2D.planning.lock()
        forwardPlan = fftwf_plan_dft_2d(Int32(height), Int32(width), buffer, buffer, FFTW_FORWARD, FFTW_ESTIMATE)
        inversePlan = fftwf_plan_dft_2d(Int32(height), Int32(width), buffer, buffer, FFTW_BACKWARD, FFTW_ESTIMATE)
        FFT2D.planning.unlock()
    }

    deinit {
        FFT2D.planning.lock()
        fftwf_destroy_plan(forwardPlan); fftwf_destroy_plan(inversePlan)
        FFT2D.planning.unlock()
        fftwf_free(buffer)
    }

    /// The spectrum of a real image (`width × height` values).
    public func forward(real: [Float]) -> [Float] {
        require(real.count == width * height, "FFT2D: \(real.count) values for \(width)x\(height)")
        return execute(forwardPlan) { raw in for i in 0..<real.count { raw[2 * i] = real[i]; raw[2 * i + 1] = 0 } }
    }

    /// The spectrum of a complex image (interleaved re, im).
    public func forward(complex values: [Float]) -> [Float] {
        require(values.count == 2 * width * height, "FFT2D: \(values.count / 2) values for \(width)x\(height)")
        return execute(forwardPlan) { raw in for i in 0..<values.count { raw[i] = values[i] } }
    }

    /// The inverse transform of interleaved complex values, not normalised.
    public func inverse(_ spectrum: [Float]) -> [Float] {
        require(spectrum.count == 2 * width * height, "FFT2D: \(spectrum.count / 2) values for \(width)x\(height)")
        return execute(inversePlan) { raw in for i in 0..<spectrum.count { raw[i] = spectrum[i] } }
    }

    /// Fills the buffer, runs `plan` in place, returns the interleaved result.
    private func execute(_ plan: fftwf_plan, fill: (UnsafeMutablePointer<Float>) -> Void) -> [Float] {
        let raw = UnsafeMutableRawPointer(buffer).assumingMemoryBound(to: Float.self)
        fill(raw)
        fftwf_execute(plan)
        return Array(UnsafeBufferPointer(start: raw, count: 2 * width * height))
    }

    /// The inverse transform divided by the pixel count (so inverse(forward(x)) = x).
    public func inverseNormalised(_ spectrum: [Float]) -> [Float] {
        let s = 1 / Float(width * height)
        return inverse(spectrum).map { $0 * s }
    }

    /// The transform's own buffer (`width × height` interleaved complex values), for a caller
    /// that keeps its data there from one transform to the next (no copies in or out):
    /// `forwardInPlace` and `inverseInPlace` transform it where it is.
    public var values: UnsafeMutablePointer<Float> { UnsafeMutableRawPointer(buffer).assumingMemoryBound(to: Float.self) }
    public func forwardInPlace() { fftwf_execute(forwardPlan) }
    /// Not normalised (FFTW's convention).
    public func inverseInPlace() { fftwf_execute(inversePlan) }
}

/// Transforms between a real image (`width × height`) and the non-redundant half of its
/// spectrum (`height × (width / 2 + 1)` interleaved complex values, row-major): half the work of
/// the complex transform for data known to be real. Both buffers belong to the transform;
/// `inverse` (not normalised) overwrites the spectrum, as FFTW's c2r does.
public final class RealFFT2D {
    public let width: Int, height: Int
    /// Columns of the half spectrum.
    public var halfWidth: Int { width / 2 + 1 }
    public let real: UnsafeMutablePointer<Float>
    let complex: UnsafeMutablePointer<fftwf_complex>
    let forwardPlan: fftwf_plan, inversePlan: fftwf_plan

    public init(width: Int, height: Int) {
        self.width = width; self.height = height
        real = fftwf_alloc_real(width * height)
        complex = fftwf_alloc_complex(height * (width / 2 + 1))
        FFT2D.planning.lock()
        forwardPlan = fftwf_plan_dft_r2c_2d(Int32(height), Int32(width), real, complex, FFTW_ESTIMATE)
        inversePlan = fftwf_plan_dft_c2r_2d(Int32(height), Int32(width), complex, real, FFTW_ESTIMATE)
        FFT2D.planning.unlock()
    }

    deinit {
        FFT2D.planning.lock()
        fftwf_destroy_plan(forwardPlan); fftwf_destroy_plan(inversePlan)
        FFT2D.planning.unlock()
        fftwf_free(real); fftwf_free(complex)
    }

    /// The half spectrum, interleaved (re, im).
    public var spectrum: UnsafeMutablePointer<Float> { UnsafeMutableRawPointer(complex).assumingMemoryBound(to: Float.self) }
    /// `real` → `spectrum`.
    public func forward() { fftwf_execute(forwardPlan) }
    /// `spectrum` → `real`, not normalised; the spectrum is overwritten.
    public func inverse() { fftwf_execute(inversePlan) }
}
