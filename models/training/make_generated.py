"""Writes ``generated_v2.jsonl``: the project's own generated training complaints.

Every sentence fragment below was written for envleads from the annotation guide (LABELS.md rules:
label what is reported as a problem, several media when several are reported, ``other`` for a
violation that names no medium, an empty list for consultations, jobs, subsidies, garbage-sorting
policy, property management, parking, traffic, signal, thanks). Nothing is taken from labelled
data. Places are invented. Output is deterministic for a given ``--seed``:

    .venv/bin/python models/training/make_generated.py [--seed 7] [--out PATH]

Kinds of rows: short single-medium complaints; two- and three-medium complaints (main concern
first); long letters that wrap the grievance in background, enforcement history and requests;
``other`` complaints (no approval, idle treatment equipment, faked monitoring, a polluting
enterprise in general terms); and non-environmental messages, many of which use environmental
words (an environmental bureau's jobs, garbage-sorting policy, a water bill) without a grievance.
Appended after those (so the earlier rows do not change): scenario letters whose labels co-occur
the way real complaints do (quarry, sand mining, mine, farm, restaurant, site, landfill...), with
generic phrases ("严重污染环境") that must not add ``other`` and context that mentions another
medium without reporting it; ``other`` letters with no medium; long non-environmental letters.
"""
from __future__ import annotations

import argparse
import json
import os
import random
from typing import Dict, List, Sequence, Tuple

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "generated_v2.jsonl")

TOWNS = ["青石镇", "白沙镇", "龙泉镇", "梅林乡", "柳塘乡", "东湖街道", "南桥街道", "石门镇",
         "桃源镇", "金川乡", "新港街道", "高坪镇", "落雁乡", "北岭镇"]
PLACES = ["青石镇红星村三组", "白沙镇老街", "龙泉镇桃园村", "梅林乡杨家湾", "东湖街道幸福社区",
          "南桥街道锦绣花园小区", "石门镇工业园", "桃源镇河西村", "新港街道滨江路",
          "高坪镇中心小学旁", "落雁乡水口村", "北岭镇火车站附近", "开发区创业大道",
          "城南区建设路", "云溪县城关镇", "长岭县马坪乡", "江北区望江小区", "西城区人民路"]
ADDRESSEES = ["尊敬的领导：", "书记您好：", "局长您好，", "市长您好！", "各位领导：", "", "", "",
              "您好！", "县长：", "尊敬的环保局领导："]
SELF = ["我是附近的居民，", "我们是周边村民，", "本人住在附近，", "我是该小区业主，", "",
        "我们村民联名反映，", "我家就在旁边，"]
CLOSERS = ["请相关部门尽快处理。", "恳请领导重视！", "希望有关部门依法查处。", "盼回复。",
           "请环保部门来查一查。", "希望还我们一个安静干净的环境。", "多次投诉无果，望解决。",
           "", "", "请求取缔。", "希望早日得到解决，谢谢！"]
HISTORY = ["我们已经多次打电话投诉，每次来人看一看就走了，过几天照旧。",
           "环保局来查过一次，罚了款，没多久又恢复原样。",
           "村委会和镇政府都说管不了，互相推诿。",
           "去年就在平台反映过，至今没有结果。",
           "执法人员每次来之前对方都能提前得到消息。",
           "向12345反映后回复说已处理，但实际情况没有任何改变。"]
BACKGROUND = ["这里住着几百户居民，还有一所小学和一个幼儿园。",
              "我们村以前山清水秀，是有名的鱼米之乡。",
              "小区入住已经五年，周边配套一直不完善。",
              "该企业是前几年招商引资进来的，一直手续不全。",
              "这个问题已经持续两年多了，老人小孩受害最深。",
              "附近还有大片农田和一个饮用水水库。"]
HARM = ["严重影响周边居民的身体健康。", "大家苦不堪言。", "老人孩子都受不了。",
        "居民生活受到严重影响。", "村民意见很大。", "已经有人因此生病住院。"]

# label -> (sources, problems). A problem may hold {src}; sources are who causes it.
MEDIA: Dict[str, Tuple[Sequence[str], Sequence[str]]] = {
    "air": (["化工厂", "沥青搅拌站", "塑料厂", "烧烤店", "饭店", "铸造厂", "砖厂", "喷漆车间",
             "养猪场", "垃圾焚烧点", "混凝土搅拌站", "石料厂", "家具厂", "橡胶厂"],
            ["{src}排放的废气有刺鼻气味，窗户都不敢开", "{src}烟囱天天冒黑烟",
             "{src}的油烟直接排到居民楼，满屋都是油烟味", "{src}晚上偷偷排放有毒气体，臭味熏得人头晕",
             "{src}粉尘漫天飞，晾的衣服上全是灰", "{src}散发出阵阵恶臭，让人作呕",
             "有人在{src}旁边露天焚烧垃圾，浓烟滚滚", "{src}的异味一到晚上就特别重", "{src}的油烟直排到居民楼", "{src}的废气不经处理直排",
             "{src}油烟直排，整栋楼都是油烟味",
             "拉土车经过扬尘很大，路边房子全是灰", "{src}没有安装油烟净化器，油烟很大",
             "{src}的臭气飘到小区，夏天根本不能开窗", "{src}排出的气体呛得人咳嗽",
             "{src}生产时散发出一股烧塑料的味道", "{src}的锅炉烧煤，黑烟一阵一阵地冒",
             "{src}排放的烟尘把附近的菜叶都染黑了", "一到晚上{src}就开始排气，空气里全是化学品的味道",
             "{src}旁边的空气质量很差，大家出门都戴口罩", "{src}熬制东西的气味弥漫整个村子"]),
    "water": (["造纸厂", "养猪场", "洗砂场", "电镀厂", "屠宰场", "食品厂", "选矿厂", "洗车店",
               "印染厂", "小区", "农贸市场"],
              ["{src}的污水直接排进河里，河水又黑又臭", "{src}通过暗管偷排废水",
               "{src}把废水排到池塘，塘里的鱼都死了", "{src}的粪水流进水库，饮用水源被污染",
               "{src}的生活污水直排到水沟，污水横流", "{src}废水渗入地下，井水都不能喝了",
               "{src}的排污口在河边，下游河水发黑发臭", "{src}污水没有处理就排进灌溉渠",
               "河面上漂满了泡沫，水质越来越差", "{src}化粪池满了，脏水流得满街都是",
               "{src}把清洗设备的废水排进小溪，溪水变成了红色", "{src}的废水把水塘染得发绿发臭",
               "{src}旁边的水渠里全是黑水，村民不敢用来浇菜", "{src}的污水流进鱼塘，鱼大量死亡",
               "{src}的废液直接倒进下水道", "{src}下游的自来水有一股怪味"]),
    "noise": (["工地", "KTV", "酒吧", "加工厂", "搅拌站", "夜宵摊", "商铺", "石材加工棚",
               "广场舞队", "装修公司", "木材加工厂"],
              ["{src}夜间施工，噪音太大，根本睡不着", "{src}音响开得震天响，严重扰民",
               "{src}机器轰鸣到凌晨，吵得孩子无法入睡", "{src}的大喇叭从早放到晚",
               "{src}切割机声音刺耳，从早吵到晚", "{src}通宵营业，喧哗声不断",
               "{src}的鼓风机一直响到半夜", "半夜还有{src}在打桩，震得窗户都响",
               "{src}的冷却塔噪声很大，晚上无法休息",
               "{src}的空压机白天黑夜响个不停", "{src}半夜装卸货物，哐当声把人吵醒",
               "{src}的喧闹声一直持续到凌晨两三点", "{src}的噪声超过了国家标准，居民无法正常生活",
               "{src}每天早上五点就开工，电锯声不断",
               "{src}的空调外机和排风扇嗡嗡响，吵得人心烦"]),
    "solid_waste": (["工地", "装修公司", "渣土车", "物业", "废品收购站", "医院", "工厂",
                     "农贸市场", "垃圾站"],
                    ["{src}把建筑垃圾倒在村口空地上", "{src}乱倒渣土，堆成了小山",
                     "{src}的生活垃圾长期没人清运，堆积如山", "有人在河边倾倒大量工业废渣",
                     "{src}把医疗废物混在生活垃圾里扔", "{src}偷偷填埋危险废物",
                     "{src}在路边乱堆废料，越堆越多", "垃圾桶满了也没人管，垃圾扔得满地都是",
                     "{src}把装修垃圾堆在楼道里", "山沟里被人偷倒了几十车垃圾",
                     "{src}的渣土车一路遗撒，路面上全是泥土", "{src}把废旧轮胎和废塑料堆在空地上",
                     "{src}的垃圾堆放点离住户不到十米，蚊蝇乱飞", "{src}把炉渣和粉煤灰倒在路边",
                     "{src}清理出来的污泥随意堆放在河堤上", "{src}的废机油和油桶随处乱扔",
                     "{src}把废渣堆在田边，越堆越高"]),
    "soil": (["冶炼厂", "电镀厂", "化工厂", "尾矿库", "选矿厂", "污泥处理厂"],
             ["{src}周边的农田被污染，庄稼连年减产", "{src}附近的土壤重金属超标",
              "{src}的废水流进稻田，田里颗粒无收", "{src}把污泥撒在地里，菜地都种不了东西",
              "{src}旁边的耕地寸草不生", "检测发现{src}附近的稻米镉超标",
              "{src}搬走后留下的污染地块没有修复就要开发建房",
              "{src}的含重金属废渣堆在田边，周围的土地都变了颜色",
              "{src}周边的果树和农作物大面积枯死", "{src}附近种出来的蔬菜检测出铅超标",
              "{src}的废水灌进农田，土地板结不能耕种"]),
    "radiation": (["移动基站", "变电站", "高压线", "信号发射塔", "配电房", "雷达站"],
                  ["小区楼顶装了{src}，担心辐射影响健康", "{src}离住户太近，辐射是否超标",
                   "我家窗户对面就是{src}，电磁辐射让人担心", "学校旁边要建{src}，家长都很担心辐射",
                   "{src}从房顶经过，晚上能听到滋滋声，担心电磁辐射",
                   "村里新建{src}，没有做辐射检测"]),
    "ecological": (["采砂船", "采石场", "矿老板", "开发商", "村干部", "外地老板"],
                   ["{src}在河道里非法采砂，河床都被挖空了", "{src}乱砍滥伐，山上的树被砍光了",
                    "{src}开山炸石，整座山被挖得千疮百孔", "有人在水库里电鱼，鱼苗都被电死了",
                    "{src}填湖造地，湿地越来越少", "有人在保护区里捕杀候鸟",
                    "{src}毁林开矿，水土流失很严重", "{src}在公益林里修路，大片植被被破坏",
                    "{src}盗采稀土，青山变成了黄土坡",
                    "{src}在河滩上挖沙，河堤都被挖垮了", "{src}在湿地里建养殖场，破坏了鸟类栖息地",
                    "有人用网捕捉野生鸟类拿去卖", "{src}把几百年的古树挖走卖钱",
                    "{src}无证开采矿石，山体被破坏得满目疮痍", "{src}在禁渔期用密网捕捞",
                    "{src}开采石场，整片山林被推平",
                    "{src}侵占林地建厂房，几百棵树被毁"]),
}
OTHER_PROBLEMS = [
    "{src}没有环评手续就开工建设", "{src}未批先建，环保部门也不管",
    "{src}环保验收没通过就投入生产", "{src}的环保设施是摆设，从来不运行",
    "{src}的治污设备平时闲置，检查时才开", "{src}篡改在线监测数据",
    "{src}的环评报告造假，群众根本没有参与调查", "{src}严重污染环境，却一直没人查处",
    "{src}被关停后又死灰复燃，继续违法生产", "{src}没有任何手续，非法生产多年，污染很严重",
    "{src}是散乱污企业，整治了又开工", "{src}没有排污许可证照样生产",
    "{src}的环评批的是一条生产线，实际建了三条", "{src}的污染防治设施一直停运",
    "{src}造成严重的环境污染，村民怨声载道", "{src}污染环境，群众多次举报都没有处理",
    "{src}手续不全就开工生产，对环境造成很大损害", "{src}没有验收就偷偷投产",
    "{src}楼顶的LED大屏晚上强光直射卧室，光污染严重",
    "{src}门口的射灯整夜开着，光污染让人无法休息",
]
OTHER_SOURCES = ["小作坊", "砖厂", "洗金场", "炼油厂", "泡沫厂", "冶炼厂", "塑料颗粒厂",
                 "化工企业", "再生资源公司", "机砖厂"]

NOT_ENVIRONMENTAL = [
    "请问环保局今年招聘的事业编岗位什么时候报名？", "咨询环境监测站的工作人员待遇问题。",
    "我是环保局的合同工，工资已经拖欠三个月了。", "请问生态环境局的公务员考试成绩什么时候公布？",
    "想咨询一下垃圾分类的具体标准，厨余垃圾要不要去掉包装？",
    "小区什么时候开始推行垃圾分类？分类垃圾桶由谁配置？", "垃圾分类积分可以兑换什么东西？",
    "请问新能源汽车购置补贴政策还有吗？", "咨询一下农村改厕的补助标准。",
    "请问环保税怎么申报？", "咨询节能家电补贴如何申请。", "建议增设一条通往工业园的公交线路。",
    "小区停车位被外来车辆长期占用，物业不管。", "物业费年年涨，服务却越来越差。",
    "开发商延期交房快一年了，房产证也办不下来。", "地下车库的车位只租不售，合理吗？",
    "小区手机信号很差，打电话经常断线。", "家里的宽带经常断网，客服一直不处理。",
    "上下班高峰期这个路口堵车非常严重，建议增设红绿灯。",
    "感谢环保局的工作人员，上次反映的问题已经解决了。", "对上次的答复表示满意，谢谢。",
    "表扬社区的网格员，帮我们解决了很多困难。", "孩子入学需要哪些材料？",
    "社保卡丢了怎么补办？", "公积金贷款额度是怎么计算的？", "拆迁补偿款一直没有发放到位。",
    "家里水表漏水，自来水公司说不归他们管。", "这个月的水费比平时多了好几倍，是不是水表坏了？",
    "小区停水三天了，也没有任何通知。", "冬天暖气不热，物业说是热力公司的问题。",
    "网购遇到诈骗，报警后一直没有结果。", "村里的低保评定不公平。",
    "老旧小区改造什么时候轮到我们小区？", "请问办理排污许可证需要准备哪些材料？",
    "企业环评报告审批需要多长时间？收费标准是多少？", "请问在小区里养鸡鸭是否违法？",
    "医院挂号太难了，建议增加网上挂号名额。", "村里的道路硬化工程什么时候动工？",
    "小区绿化带被业主私自种菜，物业也不制止。", "我们楼下的路灯坏了半年没人修。",
    "村干部在工程中贪污，请求调查。", "请问在农村建房需要办理什么手续？",
    "请问环保局的办公地址和电话是多少？", "请问如何举报企业偷税漏税？",
]
NOT_ENV_TITLES = ["咨询", "建议", "关于招聘的问题", "请求帮助", "关于物业的问题", "", "", ""]

TITLES = {
    "air": ["投诉废气污染", "关于油烟扰民的问题", "臭气熏天谁来管", "举报企业排放废气"],
    "water": ["投诉偷排污水", "河流被污染", "饮用水源受到污染", "关于污水横流的问题"],
    "noise": ["噪音扰民", "投诉夜间施工", "请求治理噪声污染", "晚上吵得无法休息"],
    "solid_waste": ["举报倾倒建筑垃圾", "垃圾无人清运", "渣土乱倒问题", "反映固废堆放问题"],
    "soil": ["关于耕地污染的问题", "农田被污染", "土壤重金属超标"],
    "radiation": ["反对建设变电站", "担心基站辐射", "高压线离住户太近"],
    "ecological": ["举报非法采砂", "山林被毁", "请求制止乱砍滥伐", "破坏生态的举报"],
    "other": ["举报企业未批先建", "环保设施形同虚设", "举报非法生产企业", "企业污染环境无人管"],
}


class _Writer:
    def __init__(self, seed: int):
        self.random = random.Random(seed)
        self.rows: List[dict] = []

    def pick(self, items):
        return self.random.choice(list(items))

    def problem(self, label: str) -> str:
        if label == "other":
            return self.pick(OTHER_PROBLEMS).format(src=self.pick(OTHER_SOURCES))
        sources, problems = MEDIA[label]
        return self.pick(problems).format(src=self.pick(sources))

    def title(self, labels: Sequence[str]) -> str:
        if not labels or self.random.random() < 0.5:
            return ""
        return self.pick(TITLES[labels[0]])

    def add(self, text: str, labels: Sequence[str], title: str = "") -> None:
        self.rows.append({"id": f"gen2-{len(self.rows):05d}", "title": title, "text": text,
                          "labels": list(labels), "synthetic": True})

    def short(self, labels: Sequence[str]) -> None:
        body = "，".join(self.problem(label) for label in labels)
        text = (self.pick(ADDRESSEES) + self.pick(SELF) + self.pick(PLACES) + body + "。"
                + (self.pick(HARM) if self.random.random() < 0.5 else "") + self.pick(CLOSERS))
        self.add(text, labels, self.title(labels))

    def letter(self, labels: Sequence[str]) -> None:
        parts = [self.pick(ADDRESSEES), self.pick(SELF) + self.pick(PLACES) + "的情况如下。",
                 self.pick(BACKGROUND)]
        for number, label in enumerate(labels, 1):
            parts.append(f"{number}、{self.problem(label)}，{self.pick(HARM)}")
        parts.append(self.pick(HISTORY))
        parts.append(self.pick(CLOSERS) or "请领导督促解决。")
        self.add("".join(parts), labels, self.title(labels))

    def not_environmental(self) -> None:
        text = self.pick(ADDRESSEES) + self.pick(NOT_ENVIRONMENTAL)
        if self.random.random() < 0.3:
            text += self.pick(["谢谢！", "盼回复。", "希望尽快答复。"])
        self.add(text, [], self.pick(NOT_ENV_TITLES))

    def not_environmental_letter(self) -> None:
        first, second = self.random.sample(NOT_ENVIRONMENTAL, 2)
        text = (self.pick(ADDRESSEES) + self.pick(SELF) + self.pick(PLACES) + "有两件事想反映。"
                + "一是" + first + "二是" + second + self.pick(["盼回复。", "谢谢！", ""]))
        self.add(text, [], self.pick(NOT_ENV_TITLES))

# Scenarios: a kind of source and what it typically does to each medium, so that multi-label
# rows co-occur the way complaints do (quarry: ecological + dust + blasting noise; mine: water +
# farmland; pig farm: stench + manure in the ditch), instead of random label pairs.
# label -> phrases; {src} is the source's name.
SCENARIOS: Dict[str, Tuple[Sequence[str], Dict[str, Sequence[str]]]] = {
    "quarry": (["采石场", "碎石厂", "石料场", "页岩矿", "石灰石矿"], {
        "ecological": ["{src}开山炸石，整座山被挖掉了一半，树木全毁了",
                       "{src}越界开采，大片林地和植被被破坏，水土流失严重",
                       "{src}把山头削平，原来的山林变成了光秃秃的石壁",
                       "{src}挖山取石，山体滑坡的隐患越来越大，树林都没有了"],
        "air": ["{src}粉尘漫天，屋前屋后一片灰白，白天都不能开窗",
                "{src}的运石车扬尘滚滚，路边的庄稼叶子上全是灰",
                "{src}破碎石头时灰尘飞扬，村民出门要戴口罩"],
        "noise": ["{src}的碎石机日夜轰鸣，晚上根本睡不着",
                  "{src}的机器噪声震耳欲聋，从早响到半夜"],
        "water": ["{src}的洗石废水排进水塘，水渠被石粉堵死",
                  "{src}开采后村里的井水断流，剩下的水也变得浑浊"],
    }),
    "sand": (["采砂船", "洗砂场", "砂石场", "挖沙老板"], {
        "ecological": ["{src}在河道里非法采砂，河床被挖得坑坑洼洼",
                       "{src}日夜挖沙，河堤被掏空，岸边的树都倒了",
                       "{src}在禁采区挖砂，河道改道，鱼虾都没了"],
        "water": ["{src}的洗砂污水直排河里，河水浑浊发黄",
                  "{src}的泥浆水流进饮用水源，自来水都是黄的"],
        "noise": ["{src}的机器通宵作业，轰鸣声吵得人睡不着"],
        "air": ["{src}的运砂车一路扬尘，尘土飞扬"],
    }),
    "mine": (["选矿厂", "铅锌矿", "冶炼厂", "锰矿", "电镀厂", "尾矿库"], {
        "water": ["{src}的选矿废水未经处理直接排进河里，饮用水源被污染",
                  "{src}排出的废水把溪水染成了红色，井水也不能喝了",
                  "{src}的含重金属污水流进灌溉渠和水塘"],
        "soil": ["下游的农田被{src}污染，稻谷检测出镉超标",
                 "{src}周边的田地已经种不出庄稼，土壤重金属严重超标",
                 "{src}的污水灌进稻田，良田被荒废，无法耕种"],
        "solid_waste": ["{src}的尾矿渣和废渣随意堆在山沟里",
                        "{src}把冶炼废渣倒在河边，越堆越高"],
        "air": ["{src}冶炼时冒出的烟气刺鼻，呛得人喘不过气"],
    }),
    "farm": (["养猪场", "养鸡场", "养牛场", "生猪屠宰场", "养鸭场"], {
        "air": ["{src}臭气熏天，一年四季都是粪便的臭味",
                "{src}的恶臭飘进家里，夏天窗户都不敢开",
                "{src}散发的臭味让人作呕，苍蝇满天飞"],
        "water": ["{src}的粪水直排到水渠，池塘发黑发臭",
                  "{src}的污水流进河里，下游的水都不能用了",
                  "{src}的养殖废水渗进地下，井水有一股臭味"],
        "noise": ["{src}每天深夜杀猪，惨叫声和机器声吵得人睡不着"],
        "solid_waste": ["{src}把病死猪和粪渣乱扔在路边"],
    }),
    "restaurant": (["烧烤店", "饭店", "夜宵摊", "火锅店", "小吃店", "酒楼"], {
        "air": ["{src}的油烟直排到居民楼，满屋都是油烟味",
                "{src}没有安装油烟净化器，油烟熏黑了楼上的窗户",
                "{src}的烟道对着卧室，油烟呛得人咳嗽"],
        "noise": ["{src}的排风机轰隆作响，吵到半夜",
                  "{src}营业到凌晨，食客喧哗声不断，严重扰民",
                  "{src}的空调外机和风机噪声很大，晚上无法休息"],
        "water": ["{src}把泔水和油污直接倒进雨水井"],
    }),
    "site": (["工地", "楼盘项目", "地铁工地", "道路施工队", "房地产项目"], {
        "noise": ["{src}夜间施工到凌晨，机器轰鸣，居民无法入睡",
                  "{src}半夜打桩，震得窗户嗡嗡响",
                  "{src}通宵浇筑混凝土，噪音扰民"],
        "air": ["{src}没有围挡和洒水，扬尘漫天",
                "{src}的土方车进出，灰尘飞扬，家里到处是灰"],
        "solid_waste": ["{src}的渣土车乱倒建筑垃圾",
                        "{src}把建筑垃圾和渣土堆在路边，一直不清运"],
    }),
    "workshop": (["石材加工厂", "木材加工厂", "板材厂", "五金加工作坊", "汽修厂"], {
        "noise": ["{src}切割机的声音刺耳，从早上五点响到深夜",
                  "{src}的机器噪声很大，已经严重扰民"],
        "air": ["{src}加工时粉尘飞扬，周围一片灰白",
                "{src}喷漆的气味刺鼻，闻了头晕"],
        "water": ["{src}的加工废水随意排放，流得满地都是"],
    }),
    "landfill": (["垃圾填埋场", "垃圾中转站", "垃圾站", "垃圾焚烧厂"], {
        "solid_waste": ["{src}的垃圾堆积如山，长期没有覆盖和清运",
                        "{src}超负荷运行，垃圾堆得到处都是"],
        "air": ["{src}四周臭气熏天，老远就能闻到",
                "{src}焚烧垃圾冒出的黑烟和臭味让人受不了"],
        "water": ["{src}的渗滤液流进水沟和池塘，水又黑又臭",
                  "{src}周边的井水被污染，各项指标都不合格"],
        "soil": ["{src}周边的菜地被污染，种的菜都不敢吃"],
    }),
    "factory": (["化工厂", "涂料厂", "皮革厂", "造纸厂", "印染厂", "制药厂", "橡胶厂"], {
        "air": ["{src}排放的废气刺鼻难闻，村民经常头晕胸闷",
                "{src}晚上偷偷排气，空气中全是化学品的味道",
                "{src}的烟囱冒黑烟，附近的菜叶上落满灰"],
        "water": ["{src}的废水未经处理直接排进河里，河水发黑",
                  "{src}通过暗管偷排污水，下游的鱼都死了"],
        "solid_waste": ["{src}的生产废渣和污泥到处乱堆",
                        "{src}半夜偷运危险废物倒在山沟里"],
        "noise": ["{src}的设备日夜运转，噪声扰得人无法休息"],
    }),
    "brickworks": (["砖厂", "机砖厂", "水泥厂", "石灰窑", "搅拌站"], {
        "air": ["{src}的烟囱天天冒黑烟，周边灰尘很大",
                "{src}烧窑时的烟气熏得人睁不开眼"],
        "ecological": ["{src}挖山取土，毁掉了几十亩林地",
                       "{src}占用基本农田和林地取土，山被挖得千疮百孔"],
        "noise": ["{src}的机器和车辆整夜轰鸣"],
        "water": ["{src}的废水流进附近的水库"],
    }),
    "substation": (["变电站", "移动基站", "高压电塔", "变压器", "通信铁塔"], {
        "radiation": ["{src}离住户只有几米远，居民担心电磁辐射危害健康",
                      "{src}建在学校旁边，家长担心辐射影响孩子",
                      "小区楼顶装了{src}，住户担心长期受辐射"],
        "noise": ["{src}日夜嗡嗡作响，噪声让人无法入睡"],
    }),
    "estate": (["小区", "安置小区", "老旧小区", "城中村"], {
        "solid_waste": ["{src}里的生活垃圾到处堆放，长期没人清运",
                        "{src}的垃圾站满溢，垃圾堆成了山"],
        "air": ["{src}里的垃圾和污水臭气熏天，蚊蝇乱飞",
                "{src}化粪池满了，臭味弥漫整栋楼"],
        "water": ["{src}的化粪池满溢，粪水污水横流到街上",
                  "{src}的生活污水直排到旁边的小河里"],
        "noise": ["{src}里的作坊和商铺噪音不断，吵得人无法休息"],
    }),
    "market": (["马路市场", "农贸市场", "夜市", "批发市场", "流动摊贩"], {
        "solid_waste": ["{src}收摊后垃圾遍地，烂菜叶和塑料袋堆成堆",
                        "{src}的垃圾没人清运，整条街脏乱差"],
        "noise": ["{src}从早到晚一片喧嚣，叫卖声和喇叭声吵得人不得安宁",
                  "{src}凌晨就开始卸货吆喝，吵得居民无法休息"],
        "water": ["{src}的污水横流，路面上全是脏水",
                  "{src}杀鸡宰鱼的血水直接排到路边的水沟里"],
        "air": ["{src}的垃圾和污水发出阵阵恶臭，夏天臭气熏天"],
    }),
    "street": (["这条街", "这段路", "小区周边道路", "河堤边的空地"], {
        "solid_waste": ["{src}被人偷倒了几十车建筑垃圾和生活垃圾",
                        "{src}到处是乱扔的垃圾，几个月都没人打扫"],
        "water": ["{src}下水道堵塞，污水从井盖里冒出来，污水横流",
                  "{src}的排污沟是明沟，黑水一直流进旁边的小河"],
        "air": ["{src}的垃圾被人点火焚烧，浓烟呛人",
                "{src}的臭水沟一到夏天就臭气冲天"],
    }),
}
# Phrases every complainant adds that name no medium: they must not make a row ``other`` when
# the row names a medium (LABELS.md: other only when no medium is named).
GENERIC = ["严重污染环境，", "对周边环境造成了严重污染，", "环保部门监管不力，",
           "当地环保部门视而不见，", "老百姓的身体健康受到严重威胁，", "污染非常严重，",
           "环境问题一直得不到解决，", "我们多次向环保局投诉都没有用，",
           "企业没有任何环保措施，", "希望环保部门严查，"]
# An explicit regulatory violation reported alongside a medium: then ``other`` is added.
VIOLATION = ["该企业没有办理环评手续就开工建设，", "{src}至今没有环评审批和排污许可，",
             "{src}的环保设施形同虚设，从不运行，", "{src}被环保部门查封后又偷偷复产，",
             "{src}未批先建，一直在违法生产，"]
# Context that mentions a medium's words without reporting that medium as a problem.
MENTIONS = {
    "soil": ["附近有几百亩农田和一所小学，", "村民世代靠种田为生，"],
    "water": ["旁边就是一条小河，", "我们村的自来水是去年才通的，", "附近有一个水库，"],
    "noise": ["这里本来是一个很安静的地方，", "白天大家都出去干活，"],
    "solid_waste": ["村里的垃圾都是统一收集的，", "环卫工人每天都来打扫，"],
    "ecological": ["我们这里山清水秀，生态一直很好，", "村后是一片山林，"],
    "radiation": ["村口有一座信号塔，", "小区旁边有一个变电站，"],
    "air": ["以前这里空气很好，"],
}
# Long non-environmental letters: officials, money, housing, roads, trees on one's own plot.
NOT_ENV_LONG = [
    "我家自留山上的树被供电公司架线时砍了几十棵，至今没有按标准给我们补偿。",
    "村里修路占了我家的承包地，补偿款被村干部截留了，请求调查。",
    "环保局关停了我的企业，但一直没有给予合法的补偿，工人工资也发不出来。",
    "我们小区的物业管理混乱，车位乱收费，门禁坏了也不修，业委会一直成立不起来。",
    "我在环卫所工作了十年，单位单方面解除劳动合同，请求劳动部门主持公道。",
    "我家房屋因山体滑坡受损，至今没有得到安置，请求政府帮助解决住房问题。",
    "我们是污水处理厂的职工，改制以后社保一直没有缴纳，请求帮助。",
    "开发商擅自调整规划，增加容积率，绿化率也降低了，严重损害业主权益。",
    "小区门口的路烂了好几年，下雨天坑坑洼洼，车辆通行非常困难，请求修缮。",
    "建议在公园里规划一个钓鱼区域，给市民提供休闲的地方。",
    "环卫清扫车早高峰占道作业，造成拥堵，建议错峰清扫。",
    "垃圾分类推行以后，小区垃圾桶的设置不合理，希望增设一些。",
    "建议在路边的垃圾桶上加装烟灰缸，方便市民丢烟头。",
    "我们是环卫工人，每天凌晨四点上班，工资却一直低于最低工资标准。",
    "镇上的广场每天晚上很多人散步，却没有一个公厕，建议尽快建一个。",
    "有商贩收购用硫磺熏过的竹笋，这种食品吃了有害健康，请市场监管部门查处。",
    "卫生院打疫苗只推荐自费疫苗，不告知免费疫苗，收费不透明。",
    "学生宿舍管理混乱，卫生条件差，学校也不管，家长很担心。",
    "我们村的自来水管网改造工程拖了两年还没完工，村民用水不方便。",
    "请问排污权交易的政策是什么？企业如何申请？",
    "河道整治工程占用了我家的鱼塘，补偿标准太低，请求重新核定。",
    "小区绿化带里的树被物业砍了，业主想知道是谁批准的。",
    "我公司的环保设备已经验收合格，为什么还被列入限产名单？请给个说法。",
]


def _scenario_rows(writer: "_Writer", count: int, names: Sequence[str] = ()) -> None:
    """Multi-medium letters from :data:`SCENARIOS` (all, or ``names``), with generic phrases
    and mentions."""
    names = list(names) or sorted(SCENARIOS)
    for _ in range(count):
        sources, media = SCENARIOS[writer.pick(names)]
        src = writer.pick(sources)
        available = list(media)
        main = writer.pick(available)
        extra = [label for label in available if label != main and writer.random.random() < 0.45]
        labels = [main] + extra
        parts = [writer.pick(ADDRESSEES), writer.pick(SELF) + writer.pick(PLACES) + "附近有一家" + src + "。"]
        unlabeled = [l for l in MENTIONS if l not in labels]
        if writer.random.random() < 0.5 and unlabeled:
            parts.append(writer.pick(MENTIONS[writer.pick(unlabeled)]) + writer.pick(BACKGROUND))
        for label in labels:
            clause = writer.pick(media[label]).format(src=src)
            if writer.random.random() < 0.4:
                clause = writer.pick(GENERIC) + clause
            parts.append(clause + "，" + writer.pick(HARM))
        if writer.random.random() < 0.2:
            parts.append(writer.pick(VIOLATION).format(src=src) + writer.pick(HARM))
            labels.append("other")
        elif writer.random.random() < 0.5:
            parts.append(writer.pick(GENERIC) + writer.pick(HARM))
        parts.append(writer.pick(HISTORY))
        parts.append(writer.pick(CLOSERS) or "请领导督促解决。")
        writer.add("".join(parts), labels, writer.title(labels))


def _generic_other_rows(writer: "_Writer", count: int) -> None:
    """``other``: a polluter in general terms, no medium named."""
    for _ in range(count):
        src = writer.pick(OTHER_SOURCES)
        parts = [writer.pick(ADDRESSEES), writer.pick(SELF) + writer.pick(PLACES) + "有一家" + src + "，",
                 writer.pick(GENERIC) + writer.pick(OTHER_PROBLEMS).format(src=src) + "。",
                 writer.pick(HARM), writer.pick(HISTORY), writer.pick(CLOSERS)]
        writer.add("".join(parts), ["other"], writer.title(["other"]))


def _not_environmental_long(writer: "_Writer", count: int) -> None:
    for _ in range(count):
        first, second = writer.random.sample(NOT_ENV_LONG, 2)
        text = (writer.pick(ADDRESSEES) + writer.pick(SELF) + writer.pick(PLACES) + "的情况如下。"
                + first + writer.pick(HISTORY) + second + writer.pick(["盼回复。", "谢谢！", "请领导过问。"]))
        writer.add(text, [], writer.pick(NOT_ENV_TITLES))


def generate(seed: int = 7) -> List[dict]:
    """The generated rows, in a fixed order for ``seed``."""
    writer = _Writer(seed)
    labels = list(MEDIA) + ["other"]
    for label in labels:
        for _ in range(45):
            writer.short([label])
        for _ in range(20):
            writer.letter([label])
    for _ in range(260):
        count = 2 if writer.random.random() < 0.75 else 3
        chosen = writer.random.sample(labels, count)
        (writer.short if writer.random.random() < 0.5 else writer.letter)(chosen)
    for _ in range(280):
        writer.not_environmental()
    for _ in range(80):
        writer.not_environmental_letter()
    # v3 rows, appended so that the rows above stay as they were.
    _scenario_rows(writer, 500)
    _generic_other_rows(writer, 60)
    _not_environmental_long(writer, 150)
    _scenario_rows(writer, 150, ("market", "street", "estate", "farm", "factory", "mine"))
    _not_environmental_long(writer, 100)
    return writer.rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    rows = generate(args.seed)
    with open(args.out, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
