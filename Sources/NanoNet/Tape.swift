import Dispatch
import NanoTensor

/// Records operations in forward order so `backward` can run their gradient closures in reverse
/// (reverse-mode automatic differentiation). One tape serves one forward/backward pass.
public final class Tape {
    private var backwardSteps: [() -> Void] = []
    public let pool: ThreadPool

    public init(pool: ThreadPool = .shared) { self.pool = pool }

    /// When set, receives the time of every stage of the pass (`beginStage`): its forward when
    /// the next stage begins or the backward starts, and each backward step the stage recorded
    /// as it runs (`backward` true). For `bench`, which sets it beside a training step's own
    /// timing; nothing else depends on it.
    ///
    /// Setting it (or clearing it) forgets any stage begun before: a pass observed from its
    /// middle reports nothing rather than a stage timed across the change.
    public var stageObserver: ((_ stage: String, _ backward: Bool, _ seconds: Double) -> Void)? {
        didSet { openStage = nil; stepStages.removeAll() }
    }
    private var openStage: (name: String, start: UInt64)?
    /// The stage each backward step was recorded in (only while observed).
    private var stepStages: [String] = []

    /// Starts the stage `name` (a network layer's ops, the loss): the ops recorded until the next
    /// stage begins are its. Costs nothing unless `stageObserver` is set.
    public func beginStage(_ name: String) {
        guard let observer = stageObserver else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        if let open = openStage { observer(open.name, false, Double(now - open.start) / 1e9) }
        openStage = (name, now)
    }

    /// True when any input needs a gradient, so the op must record its backward step.
    func needsGrad(_ inputs: Variable...) -> Bool { inputs.contains { $0.requiresGrad } }

    func record(_ step: @escaping () -> Void) {
        backwardSteps.append(step)
        if stageObserver != nil { stepStages.append(openStage?.name ?? "") }
    }

    /// Seeds d(loss)/d(loss) = 1 and propagates gradients to every variable that requires them.
    public func backward(_ loss: Variable) {
        require(loss.value.count == 1, "backward needs a scalar loss")
        if let observer = stageObserver, let open = openStage {
            observer(open.name, false, Double(DispatchTime.now().uptimeNanoseconds - open.start) / 1e9)
            openStage = nil
        }
        loss.grad = Tensor(loss.value.shape, repeating: 1)
        if let observer = stageObserver, stepStages.count == backwardSteps.count {
            for (step, stage) in zip(backwardSteps, stepStages).reversed() {
                let start = DispatchTime.now().uptimeNanoseconds
                step()
                observer(stage, true, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
        } else {
            for step in backwardSteps.reversed() { step() }
        }
        backwardSteps.removeAll()
        stepStages.removeAll()
    }

    /// A variable computed by an op: it needs a gradient when any input does.
    func output(_ t: Tensor, _ inputs: Variable...) -> Variable {
        Variable(t, requiresGrad: inputs.contains { $0.requiresGrad })
    }
}
